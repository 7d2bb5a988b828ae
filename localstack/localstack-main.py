"""Run LocalStack's runtime (`python -m localstack.runtime.main`) bound to loopback only.

localstack-core 2026.3.0's default (twisted) gateway ignores the host part of
GATEWAY_LISTEN for IPv4 and listens on 0.0.0.0 (see the "TODO: interface = host?"
in localstack/runtime/server/twisted.py). This wrapper makes IPv4 server
endpoints that were given no interface bind to SKYE_LOCALSTACK_BIND
(default 127.0.0.1) instead, then runs LocalStack's own entry point unchanged.

Started by localstack/emulators.sh with the venv-localstack interpreter.
"""

import os
import runpy
import sys

# Keep this script's folder off the import path.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

from twisted.internet import endpoints

_BIND = os.environ.get("SKYE_LOCALSTACK_BIND", "127.0.0.1")
_original_init = endpoints.TCP4ServerEndpoint.__init__


def _loopback_init(self, reactor, port, backlog=50, interface=""):
    _original_init(self, reactor, port, backlog, interface or _BIND)


endpoints.TCP4ServerEndpoint.__init__ = _loopback_init

if __name__ == "__main__":
    runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
