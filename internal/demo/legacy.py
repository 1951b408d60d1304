# A thread-per-request app that forwards NO trace headers, as many apps do: for
# each GET it calls the next service over a fresh connection and answers with
# what that said. hoptrace links the call to the request by context inference
# (hoptrace.io/context: infer, docs/inference.md). Usage: legacy.py PORT NAME NEXT_HOST NEXT_PORT
import http.client
import http.server
import sys

PORT, NAME, NEXT_HOST, NEXT_PORT = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        try:
            c = http.client.HTTPConnection(NEXT_HOST, NEXT_PORT, timeout=10)
            c.request("GET", "/")  # no traceparent: nothing is forwarded
            r = c.getresponse()
            body = r.read().decode(errors="replace").strip()
            c.close()
            status, out = 200, NAME + " -> " + body + "\n"
        except OSError as e:
            status, out = 502, NAME + ": " + str(e) + "\n"
        b = out.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


Server(("0.0.0.0", PORT), Handler).serve_forever()
