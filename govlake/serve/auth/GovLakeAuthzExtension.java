package org.govlake.auth;

import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.CurrentUserContext;
import org.apache.spark.sql.catalyst.TableIdentifier;
import org.apache.spark.sql.catalyst.analysis.AnalysisContext;
import org.apache.spark.sql.catalyst.analysis.UnresolvedRelation;
import org.apache.spark.sql.catalyst.catalog.HiveTableRelation;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.plans.logical.OneRowRelation;
import org.apache.spark.sql.catalyst.plans.logical.Range;
import org.apache.spark.sql.catalyst.plans.logical.View;
import org.apache.spark.sql.catalyst.rules.Rule;
import org.apache.spark.sql.execution.command.SetCommand;
import org.apache.spark.sql.execution.datasources.LogicalRelation;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation;
import scala.Function1;
import scala.runtime.AbstractFunction1;
import scala.runtime.AbstractPartialFunction;
import scala.runtime.BoxedUnit;

/**
 * GovLake's authorization for the SQL endpoint ({@code spark.sql.extensions}): every statement of a session opened
 * through HiveServer2 is routed to, and checked against, what the governance policy lets its user read.
 *
 * <p>The decisions are made in Python ({@code govlake.governance.access}) and written to the access file (system
 * property {@code govlake.sql.access}, re-read when it changes, so a revoked grant holds from the next statement):
 * <pre>
 * G  database                        a governed database (raw, unified, marts, ...)
 * U  user  role  scope|-             a user, its role and its share database ({@code -}: a data steward, no routing)
 * D  user  layer.table  allow|refuse  expires_epoch_ms  grant_id|-  purpose or reason
 * </pre>
 * Routing (a hint-resolution rule, before relations resolve): {@code unified.person} and, in database
 * {@code unified}, {@code person} become {@code <scope>.unified__person}: the user's masked, row-filtered view.
 * Checking (a check rule on the analysed plan), for every user but a steward: each view read is in the user's scope
 * and its resource is decided {@code allow} (a grant not expired); no catalog table is read except through such a
 * view (a read of files by path, {@code delta.`/path`}, is refused when routing); no command but SHOW/DESCRIBE/USE
 * and a bare SET.
 * A session without a user, or a user without a role, is refused. Plans Spark and Delta analyse for themselves
 * (a table's log files) are not statements and pass.
 * Every statement is appended to the audit file (system property {@code govlake.sql.audit}, JSON lines: when, user,
 * role, statement, resources, grants, decision, reason).
 */
public final class GovLakeAuthzExtension extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {
    /** System property naming the access file. */
    public static final String ACCESS_PROPERTY = "govlake.sql.access";
    /** System property naming the audit file (JSON lines, appended). */
    public static final String AUDIT_PROPERTY = "govlake.sql.audit";

    @Override
    public BoxedUnit apply(SparkSessionExtensions extensions) {
        extensions.injectHintResolutionRule(new AbstractFunction1<SparkSession, Rule<LogicalPlan>>() {
            @Override
            public Rule<LogicalPlan> apply(SparkSession session) {
                return new RouteRule(session);
            }
        });
        extensions.injectCheckRule(new AbstractFunction1<SparkSession, Function1<LogicalPlan, BoxedUnit>>() {
            @Override
            public Function1<LogicalPlan, BoxedUnit> apply(SparkSession session) {
                return new CheckRule(session);
            }
        });
        return BoxedUnit.UNIT;
    }

    /** The session user set by HiveServer2 for the running statement, or null outside the endpoint. */
    static String sessionUser() {
        return CurrentUserContext.CURRENT_USER().get();
    }

    /** Thrown for a refused statement: the message names the user, the resource and the rule. */
    public static final class AccessDeniedException extends SecurityException {
        private static final long serialVersionUID = 1L;

        AccessDeniedException(String message) {
            super(message);
        }
    }

    // --- the access file ------------------------------------------------------------------------------------------

    /** One user's role and share database ({@code scope} null for a data steward). */
    record Principal(String user, String role, String scope) {
        boolean steward() {
            return scope == null;
        }
    }

    /** One decision: may {@code user} read {@code resource}, until when, under which grant and purpose. */
    record Decision(boolean allowed, long expiresMs, String grantId, String text) {
    }

    /** The parsed access file, cached by path and modification time. */
    static final class Access {
        final Set<String> governed = new HashSet<>();
        final Map<String, Principal> principals = new HashMap<>();
        final Map<String, Decision> decisions = new HashMap<>();
        private static Access cached;
        private static String cachedKey;

        static synchronized Access load() {
            String file = System.getProperty(ACCESS_PROPERTY);
            if (file == null || file.isEmpty()) {
                throw new AccessDeniedException("no access file: system property " + ACCESS_PROPERTY + " is unset");
            }
            Path path = Paths.get(file);
            String key;
            try {
                FileTime time = Files.getLastModifiedTime(path);
                key = file + "@" + time.toMillis() + "/" + Files.size(path);
            } catch (IOException e) {
                throw new AccessDeniedException("cannot read the access file " + file + ": " + e);
            }
            if (!key.equals(cachedKey)) {
                cached = parse(path);
                cachedKey = key;
            }
            return cached;
        }

        static Access parse(Path path) {
            Access access = new Access();
            List<String> lines;
            try {
                lines = Files.readAllLines(path, StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw new AccessDeniedException("cannot read the access file " + path + ": " + e);
            }
            for (String line : lines) {
                if (line.isEmpty() || line.startsWith("#")) {
                    continue;
                }
                String[] f = line.split("\t", -1);
                switch (f[0]) {
                    case "G" -> access.governed.add(f[1].toLowerCase(Locale.ROOT));
                    case "U" -> access.principals.put(f[1], new Principal(f[1], f[2], "-".equals(f[3]) ? null : f[3]));
                    case "D" -> access.decisions.put(f[1] + "\t" + f[2].toLowerCase(Locale.ROOT),
                            new Decision("allow".equals(f[3]), Long.parseLong(f[4]), "-".equals(f[5]) ? null : f[5],
                                    f[6]));
                    default -> throw new AccessDeniedException("access file " + path + ": unknown record " + f[0]);
                }
            }
            return access;
        }
    }

    // --- routing --------------------------------------------------------------------------------------------------

    /** Data source names Spark reads files with ({@code <format>.`<path>`}). */
    static final Set<String> FILE_FORMATS = Set.of("delta", "parquet", "orc", "json", "csv", "text", "avro",
            "binaryfile", "xml");

    /** Rewrites a governed table name to the same table in the user's share database (steward: unchanged); refuses
     * a read of files by path. */
    static final class RouteRule extends Rule<LogicalPlan> {
        private final SparkSession session;

        RouteRule(SparkSession session) {
            this.session = session;
        }

        @Override
        public LogicalPlan apply(LogicalPlan plan) {
            String user = sessionUser();
            if (user == null || AnalysisContext.get().nestedViewDepth() > 0) {
                return plan;  // outside the endpoint, or inside a view's own text (left as written)
            }
            Access access = Access.load();
            Principal principal = access.principals.get(user);
            if (principal == null || principal.steward()) {
                return plan;
            }
            String[] current = session.sessionState().catalogManager().currentNamespace();
            String currentDb = current.length == 1 ? current[0].toLowerCase(Locale.ROOT) : null;
            return (LogicalPlan) plan.transformUpWithSubqueries(
                    new AbstractPartialFunction<LogicalPlan, LogicalPlan>() {
                        @Override
                        public boolean isDefinedAt(LogicalPlan node) {
                            return node instanceof UnresolvedRelation r
                                    && (target(r, access, currentDb) != null || isFileRead(r, access));
                        }

                        @Override
                        public <A1 extends LogicalPlan, B1> B1 applyOrElse(A1 node, Function1<A1, B1> fallback) {
                            if (node instanceof UnresolvedRelation r && isFileRead(r, access)) {
                                String reason = "GovLake access denied: user " + user + " (role " + principal.role()
                                        + ") reads tables by their governed name (e.g. unified.person); reading "
                                        + "files (" + String.join(".", parts(r)) + ") is for data stewards";
                                CheckRule.audit(user, principal, session.sparkContext().getLocalProperty(
                                        "spark.job.description"), Set.of(), Set.of(), "refused", reason);
                                throw new AccessDeniedException(reason);
                            }
                            if (node instanceof UnresolvedRelation r) {
                                String view = target(r, access, currentDb);
                                if (view != null) {
                                    @SuppressWarnings("unchecked")
                                    B1 routed = (B1) r.copy(seq(List.of(principal.scope(), view)), r.options(),
                                            r.isStreaming());
                                    return routed;
                                }
                            }
                            return fallback.apply(node);
                        }
                    });
        }

        private static List<String> parts(UnresolvedRelation relation) {
            return scala.jdk.javaapi.CollectionConverters.asJava(relation.multipartIdentifier());
        }

        /** True for {@code delta.`/path`}, {@code parquet.`/path`} and the like: a read of files, not of a table
         * (views of the published layers read their Delta versions so, inside their own text, never routed). */
        private static boolean isFileRead(UnresolvedRelation relation, Access access) {
            List<String> parts = parts(relation);
            return parts.size() == 2 && FILE_FORMATS.contains(parts.get(0).toLowerCase(Locale.ROOT))
                    && !access.governed.contains(parts.get(0).toLowerCase(Locale.ROOT));
        }

        /** {@code layer__table} for a governed {@code layer.table} (or a bare name in a governed database). */
        private static String target(UnresolvedRelation relation, Access access, String currentDb) {
            List<String> parts = parts(relation);
            if (parts.size() == 2 && access.governed.contains(parts.get(0).toLowerCase(Locale.ROOT))) {
                return parts.get(0).toLowerCase(Locale.ROOT) + "__" + parts.get(1).toLowerCase(Locale.ROOT);
            }
            if (parts.size() == 1 && currentDb != null && access.governed.contains(currentDb)) {
                return currentDb + "__" + parts.get(0).toLowerCase(Locale.ROOT);
            }
            return null;
        }

        private static scala.collection.immutable.Seq<String> seq(List<String> parts) {
            return scala.jdk.javaapi.CollectionConverters.asScala(parts).toSeq();
        }
    }

    // --- checking -------------------------------------------------------------------------------------------------

    /** Commands a user may run (analysed class names): listing, describing, choosing a database, reading settings. */
    static final Set<String> ALLOWED_COMMANDS = Set.of(
            "ShowTablesCommand", "ShowTables", "ShowTablesExtended", "ShowNamespaces", "ShowNamespacesCommand",
            "ShowViews", "ShowViewsCommand", "ShowColumns", "ShowColumnsCommand", "ShowFunctions",
            "ShowFunctionsCommand", "DescribeRelation", "DescribeTableCommand", "DescribeColumn",
            "DescribeColumnCommand", "DescribeFunction", "DescribeFunctionCommand", "DescribeNamespace",
            "DescribeDatabaseCommand", "SetCatalogAndNamespace", "SetNamespaceCommand", "SetCatalogCommand",
            "ShowCurrentNamespace", "ShowCurrentNamespaceCommand", "ShowCatalogs", "ShowCatalogsCommand");

    /** Refuses what the user may not read; audits every statement of an endpoint session. */
    static final class CheckRule extends AbstractFunction1<LogicalPlan, BoxedUnit> {
        /** The statement id last audited on this thread: one audit line per statement. */
        private static final ThreadLocal<String> AUDITED = new ThreadLocal<>();
        private final SparkSession session;

        CheckRule(SparkSession session) {
            this.session = session;
        }

        @Override
        public BoxedUnit apply(LogicalPlan plan) {
            String user = sessionUser();
            if (user == null) {
                throw new AccessDeniedException("GovLake access denied: no session user (the authorization "
                        + "extension serves the SQL endpoint's HiveServer2 sessions only)");
            }
            if (inViewResolution() || !isStatement(plan)) {
                return BoxedUnit.UNIT;  // a view's own text: checked as part of the statement that reads the view
            }
            String statement = session.sparkContext().getLocalProperty("spark.job.description");
            Set<String> resources = new LinkedHashSet<>();
            Set<String> grants = new LinkedHashSet<>();
            Principal principal = null;
            try {
                Access access = Access.load();
                principal = access.principals.get(user);
                if (principal == null) {
                    throw new AccessDeniedException("GovLake access denied: user " + user
                            + " has no role in the governance policy (schemas/governance/principals.yaml)");
                }
                if (!principal.steward()) {
                    check(plan, principal, access, resources, grants);
                }
            } catch (AccessDeniedException e) {
                audit(user, principal, statement, resources, grants, "refused", e.getMessage());
                throw e;
            }
            String statementId = session.sparkContext().getLocalProperty("spark.jobGroup.id");
            if (statementId == null || !statementId.equals(AUDITED.get())) {
                audit(user, principal, statement, resources, grants, "allowed", "");
                AUDITED.set(statementId);
            }
            return BoxedUnit.UNIT;
        }

        private static void check(LogicalPlan plan, Principal principal, Access access, Set<String> resources,
                                  Set<String> grants) {
            String name = plan.getClass().getSimpleName();
            if (plan instanceof SetCommand set) {
                if (set.kv().isDefined() && set.kv().get()._2().isDefined()) {
                    throw new AccessDeniedException("GovLake access denied: user " + principal.user() + " (role "
                            + principal.role() + ") may not change settings (SET " + set.kv().get()._1() + ")");
                }
                return;
            }
            if (ALLOWED_COMMANDS.contains(name)) {
                return;
            }
            if (plan instanceof org.apache.spark.sql.catalyst.plans.logical.Command) {
                throw new AccessDeniedException("GovLake access denied: user " + principal.user() + " (role "
                        + principal.role() + ") may only query: " + name + " is for data stewards");
            }
            walk(plan, principal, access, resources, grants);
        }

        private static void walk(LogicalPlan node, Principal principal, Access access, Set<String> resources,
                                 Set<String> grants) {
            if (node instanceof View view && !view.isTempView()) {
                TableIdentifier id = view.desc().identifier();
                String db = id.database().isDefined() ? id.database().get().toLowerCase(Locale.ROOT) : "";
                String table = id.table().toLowerCase(Locale.ROOT);
                int sep = table.indexOf("__");
                if (!db.equals(principal.scope()) || sep < 0) {
                    throw new AccessDeniedException("GovLake access denied: user " + principal.user() + " (role "
                            + principal.role() + ") reads tables by their governed name (e.g. unified.person), "
                            + "routed to its share database " + principal.scope() + "; the direct read of " + db + "."
                            + table + " is for data stewards");
                }
                String resource = table.substring(0, sep) + "." + table.substring(sep + 2);
                Decision decision = access.decisions.get(principal.user() + "\t" + resource);
                if (decision == null) {
                    throw new AccessDeniedException("GovLake access denied: no policy lets user " + principal.user()
                            + " (role " + principal.role() + ") read " + resource);
                }
                if (!decision.allowed()) {
                    throw new AccessDeniedException("GovLake access denied: user " + principal.user() + " (role "
                            + principal.role() + ") may not read " + resource + ": " + decision.text());
                }
                if (decision.expiresMs() > 0 && System.currentTimeMillis() >= decision.expiresMs()) {
                    throw new AccessDeniedException("GovLake access denied: grant " + decision.grantId() + " of user "
                            + principal.user() + " on " + resource + " expired at "
                            + Instant.ofEpochMilli(decision.expiresMs()));
                }
                resources.add(resource);
                if (decision.grantId() != null) {
                    grants.add(decision.grantId() + ": " + decision.text());
                }
                return;  // the view's own text reads the lakehouse table: that is the point of the view
            }
            String table = catalogTable(node);
            if (table != null) {
                throw new AccessDeniedException("GovLake access denied: user " + principal.user() + " (role "
                        + principal.role() + ") reads tables by their governed name (e.g. unified.person); the "
                        + "direct read of " + table + " is for data stewards");
            }
            for (LogicalPlan child : scala.jdk.javaapi.CollectionConverters.asJava(node.children())) {
                walk(child, principal, access, resources, grants);
            }
            for (Object sub : scala.jdk.javaapi.CollectionConverters.asJava(node.subqueries())) {
                walk((LogicalPlan) sub, principal, access, resources, grants);
            }
        }

        /** True while Spark checks a view's own text (``ViewResolution`` runs the check rules on the view's child
         * after leaving the view's analysis context, so the view depth cannot tell). */
        static boolean inViewResolution() {
            return StackWalker.getInstance().walk(frames -> frames.anyMatch(
                    f -> f.getClassName().startsWith("org.apache.spark.sql.catalyst.analysis.ViewResolution")));
        }

        /** The catalog table a leaf reads ({@code db.table}), or null for a file, a literal or a range. */
        static String catalogTable(LogicalPlan node) {
            if (node instanceof LogicalRelation r && r.catalogTable().isDefined()) {
                return r.catalogTable().get().identifier().unquotedString();
            }
            if (node instanceof HiveTableRelation r) {
                return r.tableMeta().identifier().unquotedString();
            }
            if (node instanceof DataSourceV2Relation r && r.identifier().isDefined()) {
                return r.identifier().get().toString();
            }
            return null;
        }

        /** True for a user's statement (a command, or a query of a view, a table or no relation at all), false for
         * the queries Spark and Delta analyse for themselves (reading a table's log files). */
        static boolean isStatement(LogicalPlan plan) {
            if (plan instanceof org.apache.spark.sql.catalyst.plans.logical.Command) {
                return true;
            }
            boolean[] found = {false, true};  // a view or catalog table; only literals/ranges otherwise
            scan(plan, found);
            return found[0] || found[1];
        }

        private static void scan(LogicalPlan node, boolean[] found) {
            if (node instanceof View || catalogTable(node) != null) {
                found[0] = true;
                return;
            }
            if (node.children().isEmpty() && !(node instanceof OneRowRelation || node instanceof Range)) {
                found[1] = false;
            }
            for (LogicalPlan child : scala.jdk.javaapi.CollectionConverters.asJava(node.children())) {
                scan(child, found);
            }
            for (Object sub : scala.jdk.javaapi.CollectionConverters.asJava(node.subqueries())) {
                scan((LogicalPlan) sub, found);
            }
        }

        static synchronized void audit(String user, Principal principal, String statement,
                                               Set<String> resources, Set<String> grants, String decision,
                                               String reason) {
            String file = System.getProperty(AUDIT_PROPERTY);
            if (file == null || file.isEmpty()) {
                return;
            }
            StringBuilder line = new StringBuilder(256).append('{');
            field(line, "at", Instant.now().toString()).append(',');
            field(line, "user", user).append(',');
            field(line, "role", principal == null ? null : principal.role()).append(',');
            field(line, "statement", statement).append(',');
            list(line, "resources", resources).append(',');
            list(line, "grants", grants).append(',');
            field(line, "decision", decision).append(',');
            field(line, "reason", reason).append("}\n");
            try {
                Path path = Paths.get(file);
                Files.createDirectories(path.getParent());
                try (Writer out = Files.newBufferedWriter(path, StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                        StandardOpenOption.APPEND, StandardOpenOption.WRITE)) {
                    out.write(line.toString());
                }
            } catch (IOException e) {
                throw new AccessDeniedException("GovLake access denied: cannot write the audit file " + file + ": "
                        + e);
            }
        }

        private static StringBuilder field(StringBuilder out, String key, String value) {
            out.append('"').append(key).append("\":");
            return value == null ? out.append("null") : quote(out, value);
        }

        private static StringBuilder list(StringBuilder out, String key, Set<String> values) {
            out.append('"').append(key).append("\":[");
            List<String> items = new ArrayList<>(values);
            for (int i = 0; i < items.size(); i++) {
                if (i > 0) {
                    out.append(',');
                }
                quote(out, items.get(i));
            }
            return out.append(']');
        }

        private static StringBuilder quote(StringBuilder out, String value) {
            out.append('"');
            for (char c : value.toCharArray()) {
                switch (c) {
                    case '"' -> out.append("\\\"");
                    case '\\' -> out.append("\\\\");
                    case '\n' -> out.append("\\n");
                    case '\r' -> out.append("\\r");
                    case '\t' -> out.append("\\t");
                    default -> {
                        if (c < 0x20) {
                            out.append(String.format("\\u%04x", (int) c));
                        } else {
                            out.append(c);
                        }
                    }
                }
            }
            return out.append('"');
        }
    }
}
