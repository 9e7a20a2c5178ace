// An HTTP server on the JVM (com.sun.net.httpserver) that counts GET
// requests and answers with the count. It listens on args HOST PORT
// (default 127.0.0.1 and a port the kernel picks) and prints
// "READY <port>" once listening. The JVM brings what C workloads do not:
// dozens of threads (GC, JIT compilers, the HTTP dispatcher), a large
// reserved heap, its class-data archive mapped from a file, and a unix
// socket of its own.
import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicLong;

public class CounterServer {
    public static void main(String[] args) throws Exception {
        String host = args.length > 0 ? args[0] : "127.0.0.1";
        int port = args.length > 1 ? Integer.parseInt(args[1]) : 0;
        AtomicLong count = new AtomicLong();
        HttpServer server = HttpServer.create(new InetSocketAddress(host, port), 16);
        server.createContext("/", exchange -> {
            byte[] body = (count.incrementAndGet() + "\n").getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Connection", "close");
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.start();
        System.out.println("READY " + server.getAddress().getPort());
        System.out.flush();
    }
}
