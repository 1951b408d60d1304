// A Java app on a fixed thread pool (com.sun.net.httpserver) that does NOT
// forward trace headers: for each request it calls the back end with the same
// X-Request-Id over a blocking HttpURLConnection.
// Arguments: port, back host, back port, max delay in seconds.
import com.sun.net.httpserver.HttpServer;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadLocalRandom;

public class JavaFront {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        String back = "http://" + args[1] + ":" + args[2] + "/work";
        double maxDelay = Double.parseDouble(args[3]);
        HttpServer srv = HttpServer.create(new InetSocketAddress("0.0.0.0", port), 256);
        srv.createContext("/", ex -> {
            String rid = ex.getRequestHeaders().getFirst("X-Request-Id");
            String c = ex.getRequestHeaders().getFirst("X-Calls");
            int calls = c == null ? 1 : Integer.parseInt(c);
            List<String> got = new ArrayList<>();
            try {
                for (int i = 0; i < calls; i++) {
                    Thread.sleep((long) (ThreadLocalRandom.current().nextDouble() * maxDelay * 1000));
                    HttpURLConnection u = (HttpURLConnection) new URL(back).openConnection();
                    u.setRequestProperty("X-Request-Id", rid);
                    try (InputStream in = u.getInputStream()) {
                        got.add(new String(in.readAllBytes(), StandardCharsets.UTF_8));
                    }
                }
            } catch (Exception e) {
                byte[] b = e.toString().getBytes(StandardCharsets.UTF_8);
                ex.sendResponseHeaders(502, b.length);
                ex.getResponseBody().write(b);
                ex.close();
                return;
            }
            byte[] out = ("front " + rid + " " + String.join(",", got)).getBytes(StandardCharsets.UTF_8);
            ex.sendResponseHeaders(200, out.length);
            try (OutputStream os = ex.getResponseBody()) {
                os.write(out);
            }
        });
        srv.setExecutor(Executors.newFixedThreadPool(16));
        srv.start();
    }
}
