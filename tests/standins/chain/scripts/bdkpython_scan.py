"""BDK's Python bindings (bdkpython) full-scan a wallet from the regtest
stand-in's Esplora API, with no adapter.

Usage: python3 bdkpython_scan.py [path/to/regtest-standin]
(default: $REGTEST_STANDIN_BIN, else target/debug/regtest-standin from the
workspace root). Exits non-zero on any failure; prints one summary line.
"""

import json
import os
import subprocess
import sys
import urllib.request

import bdkpython as bdk

# A BIP32 test key (testnet form), only ever used on the stand-in's regtest.
TPRV = (
    "tprv8ZgxMBicQKsPd1EzCPZcQSPhsotX5HvRDCivA7ASNQFmjWuTsW3WWEwUNKFAZrnD9qpz55rtyLdphqkwRZUqNWYXwSEzd6P4pYvXGByRim3"
)


def binary() -> str:
    if len(sys.argv) > 1:
        return sys.argv[1]
    if os.environ.get("REGTEST_STANDIN_BIN"):
        return os.environ["REGTEST_STANDIN_BIN"]
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
    return os.path.join(root, "target", "debug", "regtest-standin")


def post(base: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def get(base: str, path: str) -> str:
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return response.read().decode()


def main() -> int:
    process = subprocess.Popen(
        [binary(), "--esplora-port", "0", "--rpc-port", "0", "--initial-blocks", "101"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready = process.stdout.readline()
        fields = dict(w.split("=", 1) for w in ready.split() if "=" in w)
        base = fields["esplora"]

        network = bdk.Network.REGTEST
        wallet = bdk.Wallet(
            bdk.Descriptor(f"wpkh({TPRV}/84'/1'/0'/0/*)", bdk.NetworkKind.TEST),
            bdk.Descriptor(f"wpkh({TPRV}/84'/1'/0'/1/*)", bdk.NetworkKind.TEST),
            network,
            bdk.Persister.new_in_memory(),
        )
        first = str(wallet.reveal_next_address(bdk.KeychainKind.EXTERNAL).address)
        second = str(wallet.reveal_next_address(bdk.KeychainKind.EXTERNAL).address)
        post(base, "/control/fund", {"address": first, "amount_sat": 70_000, "mine_blocks": 3})
        post(base, "/control/fund", {"address": second, "amount_sat": 4_321})

        client = bdk.EsploraClient(base)
        update = client.full_scan(wallet.start_full_scan().build(), 5, 2)
        wallet.apply_update(update)

        balance = wallet.balance()
        tip_height = int(get(base, "/blocks/tip/height"))
        tip_hash = get(base, "/blocks/tip/hash")
        checks = {
            "confirmed 70000 sat": balance.confirmed.to_sat() == 70_000,
            "pending 4321 sat": balance.untrusted_pending.to_sat() == 4_321,
            "checkpoint at the tip": wallet.latest_checkpoint().height == tip_height == 104
            and str(wallet.latest_checkpoint().hash) == tip_hash,
        }
        for name, passed in checks.items():
            print(f"{'ok  ' if passed else 'FAIL'} {name}")
        failed = sum(not p for p in checks.values())
        print(f"bdkpython: {len(checks) - failed} passed, {failed} failed")
        return 1 if failed else 0
    finally:
        process.kill()
        process.wait()


if __name__ == "__main__":
    sys.exit(main())
