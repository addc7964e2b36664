"""Serves commercetools' own API emulator (commercetools.testing, from the commercetools Python SDK) on a
loopback port, for the tests: `python3 scripts/ctp_emulator.py PORT`.

The emulator matches requests by host name, so clients must address it as `localhost`.
"""

import sys

from commercetools.testing.server import Server
from werkzeug.serving import make_server


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = make_server("localhost", port, Server(), threaded=True)
    print(f"http://localhost:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
