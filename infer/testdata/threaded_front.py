# A thread-per-request app that does NOT forward trace headers: for each
# request it calls the back end with the same X-Request-Id (its own request id,
# which it logs) and nothing else. Used by the inference tests.
import http.client
import http.server
import random
import sys
import time

PORT, BACK_HOST, BACK_PORT, MAX_DELAY = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        rid = self.headers.get("X-Request-Id", "")
        calls = int(self.headers.get("X-Calls", "1"))
        time.sleep(random.uniform(0, MAX_DELAY))
        got = []
        for _ in range(calls):
            c = http.client.HTTPConnection(BACK_HOST, BACK_PORT, timeout=10)
            c.request("GET", "/work", headers={"X-Request-Id": rid})
            r = c.getresponse()
            got.append(r.read().decode())
            c.close()
            time.sleep(random.uniform(0, MAX_DELAY))
        out = ("front %s %s" % (rid, ",".join(got))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
        print("served", rid, flush=True)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256



Server(("0.0.0.0", PORT), Handler).serve_forever()
