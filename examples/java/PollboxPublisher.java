/*
 * PollboxPublisher publishes pollbox notifications from a JVM back end, such
 * as smpe-admin's. JDK 11 or later, java.net.http only, no dependencies:
 * copy this file into your code base (add a package line).
 *
 * It authenticates with an API key (pollbox's POLLBOX_API_KEYS=name:secret;
 * the secret is sent as the bearer token, the name becomes the sender) and
 * always sends an idempotency key: yours, or a random one for this call. A
 * publish is therefore safe to retry, and it is retried on 429, 502, 503,
 * 504 and on network errors and timeouts (where pollbox may have stored the
 * message before the connection broke), waiting as long as Retry-After says
 * or, without it, an exponential backoff with jitter; at most maxAttempts
 * times in all. Other answers are final: a 4xx other than 429 means the
 * request itself is wrong, and a 500 does not heal by repetition.
 *
 * PublishCommand.java beside it runs a publish from the command line.
 *
 * From a Spring service (one publisher, and so one HttpClient, per
 * application; it is thread-safe):
 *
 *   @Configuration
 *   class PollboxConfig {
 *       @Bean
 *       PollboxPublisher pollboxPublisher(@Value("${pollbox.url}") String url,
 *                                         @Value("${pollbox.api-key}") String apiKey) {
 *           return PollboxPublisher.builder(URI.create(url), apiKey).build();
 *       }
 *   }
 *
 *   @Service
 *   class OrderNotices {
 *       private final PollboxPublisher pollbox;
 *
 *       OrderNotices(PollboxPublisher pollbox) { this.pollbox = pollbox; }
 *
 *       // Called after the order's transaction committed; @Async keeps the
 *       // caller's thread free while pollbox is retried.
 *       @Async
 *       public void shipped(long userId, String orderNo) {
 *           pollbox.publish(PollboxPublisher.Notification.toUsers(String.valueOf(userId))
 *                   .type("notification").level("success")
 *                   .title("订单已发货").body("订单 " + orderNo + " 已发货")
 *                   .link("/order/" + orderNo)
 *                   .idempotencyKey("order-" + orderNo + "-shipped"));
 *       }
 *   }
 *
 * publish throws PollboxPublisher.PollboxException (unchecked); its
 * isTransient() tells a failure worth retrying later (say, from an outbox
 * table, with the same idempotency key) from a rejected request.
 */

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.ThreadLocalRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Publishes notifications to pollbox's POST /v1/publish with retries. */
public final class PollboxPublisher {

    private static final System.Logger LOG = System.getLogger(PollboxPublisher.class.getName());

    private final HttpClient http;
    private final URI publishUri;
    private final String authorization;
    private final Duration requestTimeout;
    private final int maxAttempts;
    private final Duration initialBackoff;
    private final Duration maxWait;

    private PollboxPublisher(Builder b) {
        this.http = HttpClient.newBuilder()
                .connectTimeout(b.connectTimeout)
                // HTTP/2 where TLS negotiates it; on plain http no h2c upgrade attempt,
                // which neither pollbox nor the usual proxies answer.
                .version("https".equals(b.baseUrl.getScheme())
                        ? HttpClient.Version.HTTP_2 : HttpClient.Version.HTTP_1_1)
                .build();
        String base = b.baseUrl.toString();
        this.publishUri = URI.create(base.endsWith("/") ? base + "v1/publish" : base + "/v1/publish");
        this.authorization = "Bearer " + b.apiKey;
        this.requestTimeout = b.requestTimeout;
        this.maxAttempts = b.maxAttempts;
        this.initialBackoff = b.initialBackoff;
        this.maxWait = b.maxWait;
    }

    /** Starts a publisher configuration for pollbox at baseUrl (e.g. http://pollbox:8080). */
    public static Builder builder(URI baseUrl, String apiKey) {
        return new Builder(baseUrl, apiKey);
    }

    /**
     * Publishes n, retrying transient failures, and returns pollbox's answer.
     *
     * @throws PollboxException when pollbox rejected the request, or was still
     *     unavailable after the last attempt (then isTransient() is true)
     */
    public Result publish(Notification n) {
        String key = n.idempotencyKey != null ? n.idempotencyKey : "auto-" + UUID.randomUUID();
        HttpRequest req = HttpRequest.newBuilder(publishUri)
                .timeout(requestTimeout)
                .header("Authorization", authorization)
                .header("Content-Type", "application/json; charset=utf-8")
                .header("Accept", "application/json")
                .POST(HttpRequest.BodyPublishers.ofByteArray(n.toJson(key).getBytes(StandardCharsets.UTF_8)))
                .build();
        for (int attempt = 1; ; attempt++) {
            PollboxException failure;
            Duration wait;
            try {
                HttpResponse<String> res = http.send(req, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
                int status = res.statusCode();
                if (status / 100 == 2) {
                    return new Result(status, res.body(), attempt);
                }
                Optional<Duration> retryAfter = retryAfter(res);
                failure = PollboxException.of(status, res.body(), retryAfter.orElse(null), attempt);
                if (!failure.isTransient()) {
                    throw failure;
                }
                wait = retryAfter.isPresent() ? retryAfter.get() : backoff(attempt);
                if (wait.compareTo(maxWait) > 0) {
                    throw failure; // longer than a caller should be kept waiting
                }
            } catch (IOException e) {
                // Connection refused or reset, or the request timed out: the
                // idempotency key makes sending it again safe.
                failure = new PollboxException("pollbox unreachable: " + e, 0, null, null, null, attempt, e);
                wait = backoff(attempt);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new PollboxException("interrupted", 0, null, null, null, attempt, e);
            }
            if (attempt >= maxAttempts) {
                throw failure;
            }
            LOG.log(System.Logger.Level.WARNING, "publish attempt {0}/{1} failed ({2}); retrying in {3} ms",
                    String.valueOf(attempt), String.valueOf(maxAttempts), failure.getMessage(),
                    String.valueOf(wait.toMillis())); // as text: MessageFormat would print 1,207
            try {
                Thread.sleep(wait.toMillis());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new PollboxException("interrupted while waiting to retry", 0, null, null, null, attempt, e);
            }
        }
    }

    /** Retry-After in seconds, the form pollbox sends; anything else is ignored. */
    private static Optional<Duration> retryAfter(HttpResponse<?> res) {
        Optional<String> v = res.headers().firstValue("Retry-After");
        if (v.isPresent() && v.get().trim().matches("[0-9]{1,9}")) {
            return Optional.of(Duration.ofSeconds(Long.parseLong(v.get().trim())));
        }
        return Optional.empty();
    }

    /** Exponential backoff with jitter: between half and all of initialBackoff * 2^(attempt-1). */
    private Duration backoff(int attempt) {
        long cap = Math.min(maxWait.toMillis(), initialBackoff.toMillis() << Math.min(attempt - 1, 20));
        return Duration.ofMillis(cap / 2 + ThreadLocalRandom.current().nextLong(cap / 2 + 1));
    }

    /** Configures a PollboxPublisher. */
    public static final class Builder {
        private final URI baseUrl;
        private final String apiKey;
        private Duration connectTimeout = Duration.ofSeconds(5);
        private Duration requestTimeout = Duration.ofSeconds(15);
        private int maxAttempts = 4;
        private Duration initialBackoff = Duration.ofMillis(500);
        private Duration maxWait = Duration.ofSeconds(30);

        private Builder(URI baseUrl, String apiKey) {
            this.baseUrl = Objects.requireNonNull(baseUrl, "baseUrl");
            this.apiKey = Objects.requireNonNull(apiKey, "apiKey");
            String scheme = baseUrl.getScheme();
            if (!"http".equals(scheme) && !"https".equals(scheme) || baseUrl.getHost() == null) {
                throw new IllegalArgumentException("pollbox URL must be http(s)://host[:port], got " + baseUrl);
            }
            if (apiKey.isEmpty() || apiKey.chars().anyMatch(c -> c <= ' ' || c > '~')) {
                throw new IllegalArgumentException("API key must be non-empty printable ASCII");
            }
        }

        /** Time to establish the TCP (and TLS) connection; default 5 s. */
        public Builder connectTimeout(Duration d) { connectTimeout = positive(d); return this; }

        /** Time for one attempt's answer; default 15 s. */
        public Builder requestTimeout(Duration d) { requestTimeout = positive(d); return this; }

        /** Attempts in all, the first included; default 4. */
        public Builder maxAttempts(int n) {
            if (n < 1) {
                throw new IllegalArgumentException("maxAttempts must be at least 1");
            }
            maxAttempts = n;
            return this;
        }

        /** First backoff when pollbox gives no Retry-After; doubles per attempt; default 500 ms. */
        public Builder initialBackoff(Duration d) { initialBackoff = positive(d); return this; }

        /**
         * Longest wait before a retry; default 30 s. A Retry-After longer than
         * this ends the retries at once instead of blocking the caller.
         */
        public Builder maxWait(Duration d) { maxWait = positive(d); return this; }

        public PollboxPublisher build() { return new PollboxPublisher(this); }

        private static Duration positive(Duration d) {
            if (d == null || d.isNegative() || d.isZero()) {
                throw new IllegalArgumentException("duration must be positive, got " + d);
            }
            return d;
        }
    }

    /** One notification and its recipients: users, groups or everyone. */
    public static final class Notification {
        private final String recipientsField; // "to", "groups" or "broadcast"
        private final List<String> recipients;
        private String type;
        private String title;
        private String body;
        private String link;
        private String level;
        private Map<String, String> data;
        private Duration expiresIn;
        private String idempotencyKey;

        private Notification(String field, List<String> recipients) {
            this.recipientsField = field;
            this.recipients = recipients;
        }

        /** To these user ids (smpe-admin: the numeric user id, as text). */
        public static Notification toUsers(String... userIds) {
            return new Notification("to", nonEmpty(userIds));
        }

        /** To every holder of these groups (smpe-admin: authorities such as "user:list"). */
        public static Notification toGroups(String... groups) {
            return new Notification("groups", nonEmpty(groups));
        }

        /** To everyone. */
        public static Notification broadcast() {
            return new Notification("broadcast", Collections.emptyList());
        }

        /** Free text; smpe-admin uses like, reply, recommend and notification. */
        public Notification type(String v) { type = v; return this; }

        public Notification title(String v) { title = v; return this; }

        public Notification body(String v) { body = v; return this; }

        public Notification link(String v) { link = v; return this; }

        /** info, success, warning or error. */
        public Notification level(String v) { level = v; return this; }

        /** Extra fields for the front end, sent as the message's data object. */
        public Notification data(String key, String value) {
            if (data == null) {
                data = new LinkedHashMap<>();
            }
            data.put(Objects.requireNonNull(key, "key"), Objects.requireNonNull(value, "value"));
            return this;
        }

        /** The message disappears this long after publishing. */
        public Notification expiresIn(Duration v) { expiresIn = v; return this; }

        /**
         * Names this notification, e.g. "order-991-shipped" (1-128 of
         * [A-Za-z0-9_.:@-]): pollbox delivers it once per recipient however
         * often it is published within 24 h, from this process or another.
         */
        public Notification idempotencyKey(String v) { idempotencyKey = v; return this; }

        /** The request body, with the given idempotency key. */
        String toJson(String key) {
            if (title == null && body == null) {
                throw new IllegalArgumentException("a notification needs a title or a body");
            }
            StringBuilder sb = new StringBuilder(256);
            sb.append('{');
            Json.name(sb, recipientsField);
            if (recipients.isEmpty()) {
                sb.append("true");
            } else {
                sb.append('[');
                for (int i = 0; i < recipients.size(); i++) {
                    if (i > 0) {
                        sb.append(',');
                    }
                    Json.string(sb, recipients.get(i));
                }
                sb.append(']');
            }
            Json.field(sb, "type", type);
            Json.field(sb, "title", title);
            Json.field(sb, "body", body);
            Json.field(sb, "link", link);
            Json.field(sb, "level", level);
            if (data != null) {
                sb.append(',');
                Json.name(sb, "data");
                sb.append('{');
                String sep = "";
                for (Map.Entry<String, String> e : data.entrySet()) {
                    sb.append(sep);
                    sep = ",";
                    Json.name(sb, e.getKey());
                    Json.string(sb, e.getValue());
                }
                sb.append('}');
            }
            if (expiresIn != null) {
                sb.append(',');
                Json.name(sb, "expires_in");
                sb.append(expiresIn.getSeconds());
            }
            Json.field(sb, "idempotency_key", key);
            return sb.append('}').toString();
        }

        private static List<String> nonEmpty(String[] values) {
            if (values.length == 0) {
                throw new IllegalArgumentException("no recipients");
            }
            List<String> list = new ArrayList<>(Arrays.asList(values));
            list.forEach(v -> Objects.requireNonNull(v, "recipient"));
            return Collections.unmodifiableList(list);
        }
    }

    /** pollbox's answer to a publish. */
    public static final class Result {
        private final int status;
        private final String body;
        private final int attempts;

        Result(int status, String body, int attempts) {
            this.status = status;
            this.body = body;
            this.attempts = attempts;
        }

        public int status() { return status; }

        /** The JSON answer, {"publish_id": "…", "state": "sent", "count": n, "ids": [...]}; parse it with your JSON library. */
        public String body() { return body; }

        /** How many attempts it took. */
        public int attempts() { return attempts; }
    }

    /** A publish that failed; isTransient() says whether trying later may succeed. */
    public static final class PollboxException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        private final int status;
        private final String errorCode;
        private final String responseBody;
        private final Duration retryAfter;
        private final int attempts;

        PollboxException(String message, int status, String errorCode, String responseBody,
                Duration retryAfter, int attempts, Throwable cause) {
            super(message, cause);
            this.status = status;
            this.errorCode = errorCode;
            this.responseBody = responseBody;
            this.retryAfter = retryAfter;
            this.attempts = attempts;
        }

        static PollboxException of(int status, String body, Duration retryAfter, int attempts) {
            String code = Json.stringValue(body, "error");
            String text = Json.stringValue(body, "message");
            String msg = "pollbox answered " + status + (code != null ? " " + code : "")
                    + (text != null ? ": " + text : "");
            return new PollboxException(msg, status, code, body, retryAfter, attempts, null);
        }

        /** The HTTP status, or 0 when no answer arrived. */
        public int status() { return status; }

        /** pollbox's error code (bad_request, unauthorized, unavailable, ...), or null. */
        public String errorCode() { return errorCode; }

        /** The answer's body, or null. */
        public String responseBody() { return responseBody; }

        /** The last Retry-After pollbox sent, if any. */
        public Optional<Duration> retryAfter() { return Optional.ofNullable(retryAfter); }

        public int attempts() { return attempts; }

        /** True when pollbox was unreachable, overloaded or down: publish again later with the same key. */
        public boolean isTransient() {
            return status == 0 || status == 429 || status == 502 || status == 503 || status == 504;
        }
    }

    /** The little JSON this needs: strings written safely, one string read back from an error. */
    static final class Json {
        private Json() {}

        static void field(StringBuilder sb, String name, String value) {
            if (value != null) {
                sb.append(',');
                name(sb, name);
                string(sb, value);
            }
        }

        static void name(StringBuilder sb, String name) {
            string(sb, name);
            sb.append(':');
        }

        /** Appends s as a JSON string; an unpaired surrogate (not Unicode text) is refused. */
        static void string(StringBuilder sb, String s) {
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"': sb.append("\\\""); break;
                    case '\\': sb.append("\\\\"); break;
                    case '\n': sb.append("\\n"); break;
                    case '\r': sb.append("\\r"); break;
                    case '\t': sb.append("\\t"); break;
                    case '\b': sb.append("\\b"); break;
                    case '\f': sb.append("\\f"); break;
                    default:
                        if (c < 0x20 || c == '\u2028' || c == '\u2029') {
                            sb.append(String.format("\\u%04x", (int) c));
                        } else if (Character.isHighSurrogate(c) && i + 1 < s.length()
                                && Character.isLowSurrogate(s.charAt(i + 1))) {
                            sb.append(c).append(s.charAt(++i));
                        } else if (Character.isSurrogate(c)) {
                            throw new IllegalArgumentException("text holds an unpaired surrogate at index " + i);
                        } else {
                            sb.append(c);
                        }
                }
            }
            sb.append('"');
        }

        /**
         * The string value of the first "name" key in a flat JSON object such
         * as pollbox's {"error":"…","message":"…"}, still JSON-escaped, or
         * null. Enough for error codes and log lines; use a JSON library for
         * anything more.
         */
        static String stringValue(String json, String name) {
            if (json == null) {
                return null;
            }
            Matcher m = Pattern.compile("\"" + Pattern.quote(name) + "\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"")
                    .matcher(json);
            return m.find() ? m.group(1) : null;
        }
    }
}
