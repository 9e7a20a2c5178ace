"""An HTTP server in CPython that counts GET requests and answers with the
count: listens on 127.0.0.1 on the port given as its argument (else one
the kernel picks) and prints "READY <port>" once listening. CPython installs its signal handlers with
SA_ONSTACK and keeps a large heap of objects: both must survive."""
import http.server
import sys

count = 0


class Counter(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global count
        count += 1
        body = f"{count}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
server = http.server.HTTPServer(("127.0.0.1", port), Counter)
print("READY", server.server_address[1], flush=True)
server.serve_forever()
