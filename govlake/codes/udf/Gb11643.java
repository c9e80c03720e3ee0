package org.govlake.udf;

import java.util.regex.Pattern;

import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.sql.api.java.UDF2;

/**
 * GB 11643-1999 citizen identity numbers as two Spark SQL functions, for the quality gate and the unified layer
 * (the Python reference is {@code govlake/codes/code_lists.py}: {@code normalize_id} and {@code id_errors}; the
 * Spark builders {@code id_normalize_col} and {@code id_error_col} call these and
 * {@code tests/codes/test_code_lists.py} checks that both agree).
 *
 * <p>Why Java: each check in Spark SQL expressions (17 substrings cast to int for the ISO 7064 MOD 11-2 sum,
 * {@code try_to_date} for the birth date, a regex for the format) was the largest single cost of the raw and
 * unified gates ({@code benchmarks/README.md}). Here it is a loop over 18 characters.
 *
 * <p>Registered by {@code govlake.core.spark.get_spark} as {@code govlake_id_normalize(string) -> string} and
 * {@code govlake_id_error(string, string) -> string}; built into {@code .cache/jars/govlake-udf.jar} by
 * {@code docker/setup.sh}.
 */
public final class Gb11643 {
    private Gb11643() {}

    /** ISO 7064 MOD 11-2 weights of positions 1..17 (GB 11643-1999 section 8.2). */
    static final int[] WEIGHTS = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    /** Check character for (sum of digit * weight) mod 11 = 0..10. */
    static final String CHECK_CHARS = "10X98765432";
    /** Whitespace stripped at both ends (Python's {@code _WS}: space, tab, LF, VT, FF, CR). */
    static final String WS = " \t\n\u000b\u000c\r";
    /** A number as a spreadsheet or a float column prints it: an exponent, or a decimal point ({@code _FLOAT_RE}). */
    static final Pattern FLOAT = Pattern.compile(
            "[+-]?(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)[eE][+-]?[0-9]+|[0-9]+\\.[0-9]*");

    /** The fold of {@code govlake.codes.code_lists._fold_table}: full-width U+FF01..FF5E to ASCII, Unicode spaces to a space. */
    static char fold(char c) {
        if (c >= '\uff01' && c <= '\uff5e') return (char) (c - 0xfee0);
        if (c == '\u3000' || c == '\u00a0' || (c >= '\u2000' && c <= '\u200a') || c == '\u202f' || c == '\u205f') {
            return ' ';
        }
        return c;
    }

    static boolean isDigit(char c) {
        return c >= '0' && c <= '9';
    }

    /** Check character of 17 ASCII digits at {@code s[0..17)}. */
    static char checkChar(CharSequence s) {
        int sum = 0;
        for (int i = 0; i < 17; i++) sum += (s.charAt(i) - '0') * WEIGHTS[i];
        return CHECK_CHARS.charAt(sum % 11);
    }

    /**
     * The Spark twin of {@code govlake.codes.code_lists.normalize_id} without flags: fold full-width forms and Unicode spaces,
     * strip {@link #WS} at both ends, blank or a floating-point rendering to null, 15 digits to 18 (GB 11643-1989
     * to 1999: "19" before the year, check character appended), lower-case x to X. Anything else unchanged.
     */
    public static String normalize(String value) {
        if (value == null) return null;
        int n = value.length();
        StringBuilder folded = null;
        for (int i = 0; i < n; i++) {
            char c = value.charAt(i);
            char f = c < 0x80 ? c : fold(c);
            if (f != c && folded == null) {
                folded = new StringBuilder(n).append(value, 0, i);
            }
            if (folded != null) folded.append(f);
        }
        String s = folded == null ? value : folded.toString();
        int start = 0;
        int end = s.length();
        while (start < end && WS.indexOf(s.charAt(start)) >= 0) start++;
        while (end > start && WS.indexOf(s.charAt(end - 1)) >= 0) end--;
        if (start > 0 || end < s.length()) s = s.substring(start, end);
        if (s.isEmpty()) return null;
        if (s.length() == 15 && allDigits(s, 15)) {
            StringBuilder b = new StringBuilder(18).append(s, 0, 6).append("19").append(s, 6, 15);
            return b.append(checkChar(b)).toString();
        }
        if ((s.indexOf('.') >= 0 || s.indexOf('e') >= 0 || s.indexOf('E') >= 0) && FLOAT.matcher(s).matches()) {
            return null;
        }
        return s.indexOf('x') >= 0 ? s.replace('x', 'X') : s;
    }

    static boolean allDigits(String s, int n) {
        for (int i = 0; i < n; i++) if (!isDigit(s.charAt(i))) return false;
        return true;
    }

    static int digits(String s, int from, int to) {
        int v = 0;
        for (int i = from; i < to; i++) v = v * 10 + (s.charAt(i) - '0');
        return v;
    }

    /**
     * The first failing check of {@code govlake.codes.code_lists.id_errors} for a normalised ID, except the division code
     * (checked in Spark SQL after this, see {@code govlake.codes.code_lists.id_error_col}): "missing", "length" (not 18
     * characters, counted as Unicode code points like Spark's {@code length}), "format" (not 17 digits + [0-9X]),
     * "checksum" (ISO 7064 MOD 11-2), "birth_date" (positions 7-14 not a real date within 1900-01-01 ..
     * {@code maxBirth}, given as yyyyMMdd); null when all pass.
     */
    public static String error(String s, String maxBirth) {
        if (s == null || s.isEmpty()) return "missing";
        if (s.length() != 18 && s.codePointCount(0, s.length()) != 18) return "length";
        if (s.length() != 18 || !allDigits(s, 17) || !(isDigit(s.charAt(17)) || s.charAt(17) == 'X')) return "format";
        if (checkChar(s) != s.charAt(17)) return "checksum";
        int year = digits(s, 6, 10);
        int month = digits(s, 10, 12);
        int day = digits(s, 12, 14);
        if (month < 1 || month > 12 || day < 1 || day > monthLength(year, month)) return "birth_date";
        int ymd = digits(s, 6, 14);
        if (ymd < 19000101 || ymd > Integer.parseInt(maxBirth)) return "birth_date";
        return null;
    }

    static int monthLength(int year, int month) {
        switch (month) {
            case 2:
                return (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) ? 29 : 28;
            case 4: case 6: case 9: case 11:
                return 30;
            default:
                return 31;
        }
    }

    /** {@code govlake_id_normalize(value string) -> string}. */
    public static final class Normalize implements UDF1<String, String> {
        @Override
        public String call(String value) {
            return normalize(value);
        }
    }

    /** {@code govlake_id_error(id string, max_birth_yyyymmdd string) -> string}. */
    public static final class Error implements UDF2<String, String, String> {
        @Override
        public String call(String id, String maxBirth) {
            return error(id, maxBirth);
        }
    }
}
