/*
 * PublishCommand publishes one pollbox notification from the command line
 * with PollboxPublisher (cron jobs, scripts, a smoke test of a deployment).
 *
 *   javac -encoding UTF-8 -d out PollboxPublisher.java PublishCommand.java
 *   export POLLBOX_URL=http://127.0.0.1:8080 POLLBOX_API_KEY=<secret>
 *   java -cp out PublishCommand --to 42,43 --type notification \
 *       --title 'Order shipped' --body 'Order 991 is on its way' \
 *       --idempotency-key order-991-shipped
 *
 * The API key comes from POLLBOX_API_KEY or from a file (--api-key-file),
 * never from an argument, which every user of the machine can list. The
 * command prints pollbox's answer ({"count":2,"ids":[...]}) and exits with
 *   0  published (also when an earlier run with the same key did it)
 *   2  usage or configuration error
 *   3  rejected by pollbox (bad request, wrong key, ...): do not retry
 *   4  pollbox unavailable after every attempt: try again later, same key
 */

import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** Command-line front end of PollboxPublisher. */
public final class PublishCommand {

    static final int EXIT_OK = 0;
    static final int EXIT_USAGE = 2;
    static final int EXIT_REJECTED = 3;
    static final int EXIT_UNAVAILABLE = 4;

    private static final List<String> OPTIONS = Arrays.asList("to", "groups", "title", "body", "type",
            "level", "link", "expires-in", "idempotency-key", "url", "api-key-file", "max-attempts");

    private static final String USAGE = String.join("\n",
            "usage: java PublishCommand (--to ID,... | --groups G,... | --broadcast)",
            "           [--title T] [--body B] [--type T] [--level L] [--link URL]",
            "           [--data KEY=VALUE]... [--expires-in SECONDS] [--idempotency-key K]",
            "           [--url URL] [--api-key-file FILE] [--max-attempts N]",
            "environment: POLLBOX_URL (or --url), POLLBOX_API_KEY (or --api-key-file):",
            "             the secret of pollbox's POLLBOX_API_KEYS=name:secret");

    private PublishCommand() {}

    public static void main(String[] args) {
        // One line per retry warning on stderr instead of JUL's two.
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            System.setProperty("java.util.logging.SimpleFormatter.format", "pollbox: %5$s%6$s%n");
        }
        System.exit(run(args, System.getenv()));
    }

    static int run(String[] args, Map<String, String> env) {
        Map<String, String> opts = new HashMap<>();
        List<String> data = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--help") || a.equals("-h")) {
                System.out.println(USAGE);
                return EXIT_OK;
            }
            if (a.equals("--broadcast")) {
                opts.put("broadcast", "true");
                continue;
            }
            if (!a.startsWith("--") || i + 1 >= args.length) {
                return usage("unexpected argument " + a);
            }
            String name = a.substring(2);
            String value = args[++i];
            if (name.equals("data")) {
                data.add(value);
            } else if (!OPTIONS.contains(name)) {
                return usage("unknown option " + a);
            } else if (opts.put(name, value) != null) {
                return usage("option " + a + " given twice");
            }
        }

        PollboxPublisher publisher;
        PollboxPublisher.Notification n;
        try {
            String url = opts.getOrDefault("url", env.get("POLLBOX_URL"));
            if (url == null || url.isEmpty()) {
                return usage("set POLLBOX_URL or --url");
            }
            String apiKey = env.get("POLLBOX_API_KEY");
            if (opts.containsKey("api-key-file")) {
                try {
                    apiKey = new String(Files.readAllBytes(Paths.get(opts.get("api-key-file"))),
                            StandardCharsets.UTF_8).trim();
                } catch (IOException e) {
                    return usage("cannot read --api-key-file: " + e);
                }
            }
            if (apiKey == null || apiKey.isEmpty()) {
                return usage("set POLLBOX_API_KEY or --api-key-file");
            }
            PollboxPublisher.Builder b = PollboxPublisher.builder(URI.create(url), apiKey);
            if (opts.containsKey("max-attempts")) {
                b.maxAttempts(Integer.parseInt(opts.get("max-attempts")));
            }
            publisher = b.build();

            int targets = (opts.containsKey("to") ? 1 : 0) + (opts.containsKey("groups") ? 1 : 0)
                    + (opts.containsKey("broadcast") ? 1 : 0);
            if (targets != 1) {
                return usage("give exactly one of --to, --groups and --broadcast");
            }
            if (opts.containsKey("to")) {
                n = PollboxPublisher.Notification.toUsers(opts.get("to").split(",", -1));
            } else if (opts.containsKey("groups")) {
                n = PollboxPublisher.Notification.toGroups(opts.get("groups").split(",", -1));
            } else {
                n = PollboxPublisher.Notification.broadcast();
            }
            n.title(opts.get("title")).body(opts.get("body")).type(opts.get("type"))
                    .level(opts.get("level")).link(opts.get("link"))
                    .idempotencyKey(opts.get("idempotency-key"));
            for (String kv : data) {
                int eq = kv.indexOf('=');
                if (eq <= 0) {
                    return usage("--data wants KEY=VALUE, got " + kv);
                }
                n.data(kv.substring(0, eq), kv.substring(eq + 1));
            }
            if (opts.containsKey("expires-in")) {
                n.expiresIn(Duration.ofSeconds(Long.parseLong(opts.get("expires-in"))));
            }
            n.toJson("check"); // what publish would refuse is a usage error here
        } catch (IllegalArgumentException e) { // also NumberFormatException
            return usage(e.getMessage());
        }

        try {
            PollboxPublisher.Result r = publisher.publish(n);
            System.out.println(r.body());
            return EXIT_OK;
        } catch (PollboxPublisher.PollboxException e) {
            System.err.println("pollbox: publish failed after " + e.attempts() + " attempt(s): " + e.getMessage());
            return e.isTransient() ? EXIT_UNAVAILABLE : EXIT_REJECTED;
        }
    }

    private static int usage(String problem) {
        System.err.println("pollbox: " + problem);
        System.err.println(USAGE);
        return EXIT_USAGE;
    }
}
