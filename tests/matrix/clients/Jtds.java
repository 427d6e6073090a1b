// jTDS 1.3.1 (Debian libjtds-java, Java 17) against the responder, for the client matrix.
// Run as a single-file program: java -cp /usr/share/java/jtds.jar Jtds.java
// Settings from the environment that tests/matrix/run.sh sets:
//   MX_PORT  responder port on 127.0.0.1
//   MX_SSL   jTDS's ssl property: off (no PRELOGIN at all) | request | require | authenticate
// TLS versions and suites are forced with -Djdk.tls.client.protocols / cipherSuites (JAVA_OPTS).
// Prints `ok` once SELECT 1 ran, or `error: <SQLState>`; never the user, password or SQL text.
// Note: after LOGINACK jTDS runs its own set-up query, which the responder answers with a bare DONE,
// so jTDS stops there with SQLState 24000 (no result set) and closes: the handshake and the login
// are complete on the wire by then.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.sql.Statement;

public class Jtds {
    public static void main(String[] args) throws Exception {
        Class.forName("net.sourceforge.jtds.jdbc.Driver");
        String url = "jdbc:jtds:sqlserver://127.0.0.1:" + System.getenv("MX_PORT")
                + "/master;ssl=" + System.getenv("MX_SSL") + ";loginTimeout=8;socketTimeout=8";
        try (Connection c = DriverManager.getConnection(url, "matrix", "not-a-secret");
                Statement s = c.createStatement()) {
            s.execute("SELECT 1");
            System.out.println("ok");
        } catch (SQLException e) {
            System.out.println("error: " + e.getSQLState());
            System.exit(1);
        }
    }
}
