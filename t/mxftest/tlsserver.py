# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""HTTPS servers on loopback for the tests that stand in for other servers'
key endpoints (certificates from test_030's make_cert)."""
import http.server
import json
import ssl
import threading


def start(handler, cert, port):
    """Serves @handler (a BaseHTTPRequestHandler class) over TLS with @cert
    (certificate and key paths) on 127.0.0.1:@port, in a thread; returns the
    server (shutdown() and server_close() stop it)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def send_json(handler, status, body):
    """Answers @handler's request with @body as JSON; a client that gave up
    (the time-out tests) is no error."""
    data = json.dumps(body).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:
        pass
