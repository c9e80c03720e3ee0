package org.govlake.auth;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.Base64;
import java.util.List;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import javax.security.sasl.AuthenticationException;
import org.apache.hive.service.auth.PasswdAuthenticationProvider;

/**
 * HiveServer2 CUSTOM authentication for GovLake's SQL endpoint: checks a user's password against the users file
 * written by {@code python -m govlake.serve.sql_endpoint init} (path in the system property {@code govlake.sql.users}).
 *
 * <p>One line per user: {@code name:pbkdf2_sha256$iterations$salt_base64$hash_base64} (PBKDF2-HMAC-SHA256, the
 * format of govlake.serve.sql_endpoint.hash_password); blank lines and lines starting with # are ignored. The file is
 * read on every login, so a changed password holds without a restart. Unknown users cost a hash like known ones.
 */
public final class PasswordFileAuthenticator implements PasswdAuthenticationProvider {
    /** System property naming the users file. */
    public static final String USERS_PROPERTY = "govlake.sql.users";
    private static final String SCHEME = "pbkdf2_sha256";
    private static final String DUMMY = SCHEME + "$100000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    @Override
    public void Authenticate(String user, String password) throws AuthenticationException {
        String file = System.getProperty(USERS_PROPERTY);
        if (file == null || file.isEmpty()) {
            throw new AuthenticationException("no users file: system property " + USERS_PROPERTY + " is unset");
        }
        String stored = null;
        try {
            List<String> lines = Files.readAllLines(Paths.get(file), StandardCharsets.UTF_8);
            for (String line : lines) {
                String trimmed = line.trim();
                if (trimmed.isEmpty() || trimmed.startsWith("#")) {
                    continue;
                }
                int colon = trimmed.indexOf(':');
                if (colon > 0 && trimmed.substring(0, colon).equals(user)) {
                    stored = trimmed.substring(colon + 1);
                }
            }
        } catch (IOException e) {
            throw new AuthenticationException("cannot read the users file " + file, e);
        }
        boolean ok = verify(password == null ? "" : password, stored == null ? DUMMY : stored);
        if (stored == null || !ok) {
            throw new AuthenticationException("invalid user or password");
        }
    }

    /** True when {@code password} matches the stored {@code pbkdf2_sha256$iterations$salt$hash}. */
    static boolean verify(String password, String stored) throws AuthenticationException {
        String[] parts = stored.split("\\$");
        if (parts.length != 4 || !parts[0].equals(SCHEME)) {
            return false;
        }
        try {
            int iterations = Integer.parseInt(parts[1]);
            byte[] salt = Base64.getDecoder().decode(parts[2]);
            byte[] expected = Base64.getDecoder().decode(parts[3]);
            PBEKeySpec spec = new PBEKeySpec(password.toCharArray(), salt, iterations, expected.length * 8);
            byte[] actual = SecretKeyFactory.getInstance("PBKDF2WithHmacSHA256").generateSecret(spec).getEncoded();
            spec.clearPassword();
            return MessageDigest.isEqual(actual, expected);
        } catch (IllegalArgumentException | GeneralSecurityException e) {
            return false;
        }
    }

    /** Command line for tests: {@code java ... PasswordFileAuthenticator USER} with the password on stdin. */
    public static void main(String[] args) throws IOException {
        String password = new String(System.in.readAllBytes(), StandardCharsets.UTF_8).strip();
        try {
            new PasswordFileAuthenticator().Authenticate(args[0], password);
            System.out.println("ok");
        } catch (AuthenticationException e) {
            System.out.println("refused: " + e.getMessage());
            System.exit(1);
        }
    }
}
