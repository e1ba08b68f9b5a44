//! A stand-in SMTP server for tests, NOT a mail server: it speaks enough real SMTP over
//! TCP on 127.0.0.1 for a client to deliver to it (greeting, EHLO/HELO with
//! capabilities, STARTTLS or TLS from the first byte with a self-signed certificate,
//! optional AUTH PLAIN and LOGIN checking one user name and password, MAIL FROM, RCPT
//! TO, DATA with dot-unstuffing, RSET, NOOP, QUIT) and records what it received. It can
//! also stall (accept and never greet) to test timeouts.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// TLS for the stand-in: a fresh self-signed certificate for 127.0.0.1.
#[derive(Clone)]
pub struct StandInTls {
    /// The certificate, PEM: what a client must trust.
    pub ca_pem: String,
    acceptor: TlsAcceptor,
    /// TLS from the first byte (SMTPS) rather than STARTTLS.
    pub implicit: bool,
}

impl std::fmt::Debug for StandInTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandInTls")
            .field("implicit", &self.implicit)
            .finish_non_exhaustive()
    }
}

impl StandInTls {
    /// A new certificate; `implicit` for SMTPS, STARTTLS otherwise.
    pub fn new(implicit: bool) -> StandInTls {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = rustls::pki_types::CertificateDer::from(certified.cert.der().to_vec());
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        StandInTls {
            ca_pem: certified.cert.pem(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
            implicit,
        }
    }
}

/// How the stand-in behaves.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Require AUTH with these credentials before MAIL FROM (advertises AUTH PLAIN LOGIN).
    pub credentials: Option<(String, String)>,
    /// Offer (and accept) AUTH LOGIN only, not PLAIN.
    pub login_only: bool,
    /// Accept connections and never answer.
    pub stall: bool,
    /// Offer STARTTLS, or speak TLS from the first byte. AUTH is then offered only once
    /// the connection is encrypted, as real servers do.
    pub tls: Option<StandInTls>,
}

/// One delivered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The EHLO/HELO name.
    pub hello: String,
    /// The authenticated user, if any.
    pub auth_user: Option<String>,
    /// The envelope sender.
    pub mail_from: String,
    /// The envelope recipients.
    pub rcpt_to: Vec<String>,
    /// The message (headers and body), dot-unstuffed, lines joined with CRLF.
    pub data: String,
    /// Whether it came over TLS.
    pub tls: bool,
}

impl Received {
    /// The body: what follows the first empty line.
    pub fn body(&self) -> &str {
        self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    /// The value of a header (first occurrence, case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self
            .data
            .split_once("\r\n\r\n")
            .map_or(&*self.data, |(h, _)| h);
        head.split("\r\n").find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

#[derive(Debug, Default)]
struct Log {
    messages: Vec<Received>,
    auth_failures: u32,
    auth_attempts: u32,
    connections: u32,
}

/// A running stand-in; stops when dropped.
#[derive(Debug)]
pub struct SmtpStandIn {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    task: JoinHandle<()>,
}

impl Drop for SmtpStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpStandIn {
    /// Listens on 127.0.0.1 on a free port.
    pub async fn start(behaviour: Behaviour) -> SmtpStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let shared = log.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                shared.lock().unwrap().connections += 1;
                if behaviour.stall {
                    // Keep the socket open and silent.
                    held.push(stream);
                    continue;
                }
                let behaviour = behaviour.clone();
                let log = shared.clone();
                tokio::spawn(async move {
                    let _ = connection(stream, &behaviour, &log).await;
                });
            }
        });
        SmtpStandIn { addr, log, task }
    }

    /// Messages delivered so far.
    pub fn messages(&self) -> Vec<Received> {
        self.log.lock().unwrap().messages.clone()
    }

    /// AUTH attempts refused so far.
    pub fn auth_failures(&self) -> u32 {
        self.log.lock().unwrap().auth_failures
    }

    /// AUTH attempts so far.
    pub fn auth_attempts(&self) -> u32 {
        self.log.lock().unwrap().auth_attempts
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u32 {
        self.log.lock().unwrap().connections
    }
}

/// The address inside `FROM:<a@b> SIZE=..` or `TO:<a@b>`.
fn path_arg(rest: &str) -> Option<String> {
    let start = rest.find('<')?;
    let end = rest[start..].find('>')? + start;
    Some(rest[start + 1..end].to_owned())
}

async fn connection(
    stream: TcpStream,
    behaviour: &Behaviour,
    log: &Mutex<Log>,
) -> std::io::Result<()> {
    match &behaviour.tls {
        Some(tls) if tls.implicit => {
            let stream = tls.acceptor.accept(stream).await?;
            session(stream, behaviour, log, true, true).await?;
        }
        Some(tls) => {
            if let Some(stream) = session(stream, behaviour, log, false, true).await? {
                let stream = tls.acceptor.accept(stream).await?;
                // After STARTTLS the client starts again with EHLO, without a greeting.
                session(stream, behaviour, log, true, false).await?;
            }
        }
        None => {
            session(stream, behaviour, log, false, true).await?;
        }
    }
    Ok(())
}

/// One SMTP session; returns the stream when the client asked for STARTTLS.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    behaviour: &Behaviour,
    log: &Mutex<Log>,
    secure: bool,
    greet: bool,
) -> std::io::Result<Option<S>> {
    let mut conn = BufReader::new(stream);
    let offer_starttls = !secure && behaviour.tls.as_ref().is_some_and(|t| !t.implicit);
    let offer_auth = behaviour.credentials.is_some() && (secure || behaviour.tls.is_none());
    if greet {
        send(&mut conn, b"220 smtp-standin ESMTP test stand-in\r\n").await?;
    }
    let mut hello = String::new();
    let mut authed: Option<String> = None;
    let mut mail_from: Option<String> = None;
    let mut rcpt_to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let command = line.trim_end_matches(['\r', '\n']).to_owned();
        let upper = command.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("").to_owned();
        let reply: String = match verb.as_str() {
            "EHLO" => {
                hello = command[4..].trim().to_owned();
                let mut r = String::from("250-smtp-standin greets you\r\n250-8BITMIME\r\n");
                if offer_starttls {
                    r.push_str("250-STARTTLS\r\n");
                }
                if offer_auth {
                    r.push_str(if behaviour.login_only {
                        "250-AUTH LOGIN\r\n"
                    } else {
                        "250-AUTH PLAIN LOGIN\r\n"
                    });
                }
                r.push_str("250 SIZE 1048576\r\n");
                r
            }
            "HELO" => {
                hello = command[4..].trim().to_owned();
                "250 smtp-standin\r\n".to_owned()
            }
            "STARTTLS" if offer_starttls => {
                send(&mut conn, b"220 2.0.0 ready to start TLS\r\n").await?;
                return Ok(Some(conn.into_inner()));
            }
            "AUTH" => {
                let (Some((user, pass)), true) = (&behaviour.credentials, offer_auth) else {
                    send(&mut conn, b"502 5.5.1 AUTH not offered\r\n").await?;
                    continue;
                };
                log.lock().unwrap().auth_attempts += 1;
                let mut parts = command.split_whitespace().skip(1);
                let mechanism = parts.next().unwrap_or("").to_ascii_uppercase();
                let initial = parts.next().map(str::to_owned);
                let given = match mechanism.as_str() {
                    "PLAIN" if !behaviour.login_only => {
                        let response = match initial {
                            Some(r) => r,
                            None => {
                                send(&mut conn, b"334 \r\n").await?;
                                read_line(&mut conn).await?
                            }
                        };
                        BASE64.decode(response.trim()).ok().and_then(|raw| {
                            // authzid \0 authcid \0 password
                            let mut fields = raw.split(|b| *b == 0).skip(1);
                            let u = String::from_utf8(fields.next()?.to_vec()).ok()?;
                            let p = String::from_utf8(fields.next()?.to_vec()).ok()?;
                            Some((u, p))
                        })
                    }
                    "LOGIN" => {
                        let u = match initial {
                            Some(r) => r,
                            None => {
                                let prompt = format!("334 {}\r\n", BASE64.encode(b"Username:"));
                                send(&mut conn, prompt.as_bytes()).await?;
                                read_line(&mut conn).await?
                            }
                        };
                        let prompt = format!("334 {}\r\n", BASE64.encode(b"Password:"));
                        send(&mut conn, prompt.as_bytes()).await?;
                        let p = read_line(&mut conn).await?;
                        BASE64
                            .decode(u.trim())
                            .ok()
                            .zip(BASE64.decode(p.trim()).ok())
                            .and_then(|(u, p)| {
                                String::from_utf8(u).ok().zip(String::from_utf8(p).ok())
                            })
                    }
                    _ => {
                        send(&mut conn, b"504 5.5.4 unrecognized authentication type\r\n").await?;
                        continue;
                    }
                };
                if given.as_ref() == Some(&(user.clone(), pass.clone())) {
                    authed = Some(user.clone());
                    "235 2.7.0 authentication successful\r\n".to_owned()
                } else {
                    log.lock().unwrap().auth_failures += 1;
                    "535 5.7.8 authentication credentials invalid\r\n".to_owned()
                }
            }
            "MAIL" if behaviour.credentials.is_some() && authed.is_none() => {
                "530 5.7.0 authentication required\r\n".to_owned()
            }
            "MAIL" => match path_arg(&command) {
                Some(from) => {
                    mail_from = Some(from);
                    rcpt_to.clear();
                    "250 2.1.0 ok\r\n".to_owned()
                }
                None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".to_owned(),
            },
            "RCPT" => match (&mail_from, path_arg(&command)) {
                (None, _) => "503 5.5.1 MAIL first\r\n".to_owned(),
                (_, None) => "501 5.5.4 syntax: RCPT TO:<address>\r\n".to_owned(),
                (Some(_), Some(to)) => {
                    rcpt_to.push(to);
                    "250 2.1.5 ok\r\n".to_owned()
                }
            },
            "DATA" => {
                let Some(from) = mail_from.take() else {
                    send(&mut conn, b"503 5.5.1 MAIL first\r\n").await?;
                    continue;
                };
                if rcpt_to.is_empty() {
                    send(&mut conn, b"554 5.5.1 no valid recipients\r\n").await?;
                    continue;
                }
                send(&mut conn, b"354 end data with <CR><LF>.<CR><LF>\r\n").await?;
                let mut data_lines = Vec::new();
                loop {
                    let l = read_line(&mut conn).await?;
                    if l == "." {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 4.5.2).
                    data_lines.push(l.strip_prefix('.').map(str::to_owned).unwrap_or(l));
                }
                log.lock().unwrap().messages.push(Received {
                    hello: hello.clone(),
                    auth_user: authed.clone(),
                    mail_from: from,
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data: data_lines.join("\r\n"),
                    tls: secure,
                });
                "250 2.0.0 queued\r\n".to_owned()
            }
            "RSET" => {
                mail_from = None;
                rcpt_to.clear();
                "250 2.0.0 ok\r\n".to_owned()
            }
            "NOOP" => "250 2.0.0 ok\r\n".to_owned(),
            "QUIT" => {
                send(&mut conn, b"221 2.0.0 bye\r\n").await?;
                return Ok(None);
            }
            _ => "502 5.5.2 command not recognized\r\n".to_owned(),
        };
        send(&mut conn, reply.as_bytes()).await?;
    }
}

/// Writes and flushes (TLS buffers otherwise).
async fn send<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<String> {
    let mut l = String::new();
    if r.read_line(&mut l).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(l.trim_end_matches(['\r', '\n']).to_owned())
}
