// The driver-matrix scenario through pgjdbc, run by tests/integration/test_drivers.py
// as a single-file program: java -cp postgresql.jar JdbcScenario.java URL KEY ROUNDS.
// Prints one JSON object per round: what the driver got back, bytes as hex.

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.UUID;

public class JdbcScenario {
    static final String AD = "convert_to('drivers', 'utf8')";
    static final String ENCRYPT = "select pgsodium.crypto_aead_det_encrypt("
        + "convert_to(?, 'utf8'), " + AD + ", cast(? as uuid))";
    static final String DECRYPT = "select convert_from(pgsodium.crypto_aead_det_decrypt("
        + "cast(? as bytea), " + AD + ", cast(? as uuid)), 'utf8')";
    static final String VALID_KEY = "select key_type::text, name from pgsodium.valid_key"
        + " where id = cast(? as uuid)";
    static final String ROW_DECRYPT = "select id, convert_from("
        + "pgsodium.crypto_aead_det_decrypt(secret, " + AD + ", cast(? as uuid)), 'utf8')"
        + " from driver_rows order by id";
    static final String ORDINARY = "select cast(? as int) + 1,"
        + " (select sum(g) from generate_series(1, 100) g)::int";

    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        UUID key = UUID.fromString(args[1]);
        int rounds = Integer.parseInt(args[2]);
        try (Connection conn = DriverManager.getConnection(args[0])) {
            // The same PreparedStatement objects each round: from prepareThreshold
            // executions on, pgjdbc switches them to named server-side statements.
            PreparedStatement encrypt = conn.prepareStatement(ENCRYPT);
            PreparedStatement decrypt = conn.prepareStatement(DECRYPT);
            PreparedStatement validKey = conn.prepareStatement(VALID_KEY);
            PreparedStatement ordinary = conn.prepareStatement(ORDINARY);
            for (int round = 0; round < rounds; round++) {
                StringBuilder json = new StringBuilder("{");
                encrypt.setString(1, "alice \u00fc");
                encrypt.setObject(2, key);
                byte[] ciphertext = single(encrypt).getBytes(1);
                field(json, "ciphertext", quote(HexFormat.of().formatHex(ciphertext)));
                decrypt.setBytes(1, ciphertext);
                decrypt.setObject(2, key);
                field(json, "plaintext", quote(single(decrypt).getString(1)));
                validKey.setObject(1, key);
                ResultSet valid = single(validKey);
                field(json, "valid_key",
                    "[" + quote(valid.getString(1)) + "," + quote(valid.getString(2)) + "]");
                field(json, "rows", rows(conn, key));
                ordinary.setInt(1, 41);
                ResultSet plain = single(ordinary);
                field(json, "ordinary", "[" + plain.getInt(1) + "," + plain.getInt(2) + "]");
                json.setLength(json.length() - 1);
                out.println(json.append("}"));
            }
        }
    }

    /** The decrypted rows through a cursor-backed fetch: fetchSize needs a transaction. */
    static String rows(Connection conn, UUID key) throws SQLException {
        conn.setAutoCommit(false);
        List<String> rows = new ArrayList<>();
        try (PreparedStatement statement = conn.prepareStatement(ROW_DECRYPT)) {
            statement.setFetchSize(7);
            statement.setObject(1, key);
            try (ResultSet rs = statement.executeQuery()) {
                while (rs.next()) {
                    rows.add("[" + rs.getInt(1) + "," + quote(rs.getString(2)) + "]");
                }
            }
        }
        conn.commit();
        conn.setAutoCommit(true);
        return "[" + String.join(",", rows) + "]";
    }

    static ResultSet single(PreparedStatement statement) throws SQLException {
        ResultSet rs = statement.executeQuery();
        if (!rs.next()) {
            throw new SQLException("no row");
        }
        return rs;
    }

    static void field(StringBuilder json, String name, String value) {
        json.append(quote(name)).append(':').append(value).append(',');
    }

    static String quote(String text) {
        return "\"" + text.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }
}
