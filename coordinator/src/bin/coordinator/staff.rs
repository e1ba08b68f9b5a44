//! `coordinator staff create | disable | list`. A password is read from a file or standard
//! input, never from the command line (argv is visible to every user of the host).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use coordinator::bank::staff_admin;
use coordinator::bank::{Email, NewPassword, Secret, StaffRole};
use coordinator::ops::Config;
use zeroize::Zeroizing;

#[derive(clap::Subcommand, Debug)]
pub enum StaffCommand {
    /// Creates a staff member who logs in to the admin API (`staffLogin`).
    Create {
        /// `admin`, `support`, `compliance` or `treasury`.
        #[arg(long)]
        role: String,
        /// The e-mail the member logs in with.
        #[arg(long)]
        username: String,
        /// A file holding the password (one trailing newline ignored); standard input
        /// otherwise.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Disables a staff member and revokes their sessions at once.
    Disable {
        /// The member's e-mail.
        #[arg(long)]
        username: String,
    },
    /// Lists the staff members.
    List,
}

fn read_password(file: Option<&std::path::Path>) -> anyhow::Result<Secret> {
    let mut text = Zeroizing::new(String::new());
    match file {
        Some(path) => {
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .with_context(|| format!("reading the password file {}", path.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the password from standard input")?;
        }
    }
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    Ok(Secret::new(password))
}

pub async fn run(
    pool: &sqlx::PgPool,
    config: &Config,
    command: StaffCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        StaffCommand::Create {
            role,
            username,
            password_file,
        } => {
            let role: StaffRole = role.parse().map_err(|_| {
                anyhow::anyhow!("--role: {role:?} is not admin, support, compliance or treasury")
            })?;
            let email: Email = username
                .parse()
                .map_err(|e| anyhow::anyhow!("--username: {e}"))?;
            let password = NewPassword::new(read_password(password_file.as_deref())?)
                .map_err(|e| anyhow::anyhow!("password: {e}"))?;
            let id =
                staff_admin::create_staff(pool, config.bank.password_cost, &email, &password, role)
                    .await
                    .with_context(|| format!("creating staff member {}", email.as_str()))?;
            writeln!(out, "created {} {} ({id})", role.as_str(), email.as_str())?;
        }
        StaffCommand::Disable { username } => {
            let email: Email = username
                .parse()
                .map_err(|e| anyhow::anyhow!("--username: {e}"))?;
            let revoked = staff_admin::disable_staff(pool, &email)
                .await
                .with_context(|| format!("disabling staff member {}", email.as_str()))?;
            writeln!(
                out,
                "disabled {}; {revoked} session(s) revoked",
                email.as_str()
            )?;
        }
        StaffCommand::List => {
            for m in staff_admin::list_staff(pool).await? {
                let state = m
                    .disabled_at
                    .map_or_else(|| "active".to_owned(), |t| format!("disabled {t}"));
                writeln!(out, "{}\t{}\t{}\t{state}", m.id, m.email, m.role.as_str())?;
            }
        }
    }
    Ok(())
}
