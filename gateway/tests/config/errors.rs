//! One test per error class: the exact `file:line:` prefix and the words that name the problem.

use crate::support::{CELL, assert_error, assert_file_error, error};

// --- TOML itself -------------------------------------------------------------------------------

#[test]
fn syntax_error() {
    assert_error("[server]\nlisten = \"0.0.0.0:8080\n", 2, &[]);
}

#[test]
fn unknown_keys_anywhere_point_at_the_key() {
    let cases: [(&str, usize, &str); 8] = [
        ("\n[servr]\n", 2, "unknown field `servr`"),
        (
            "[server]\nlisten = \"0.0.0.0:1\"\nfoo = 1\n",
            3,
            "unknown field `foo`, expected one of",
        ),
        (
            "[redis]\nurl = \"redis://h\"\npassword = \"x\"\n",
            3,
            "unknown field `password`",
        ),
        ("[routing]\n\nkeys = []\n", 3, "unknown field `keys`"),
        (
            "[[cells]]\nname = \"c\"\nupstream = [\"a:1\"]\n",
            3,
            "unknown field `upstream`",
        ),
        ("[delivery]\nretries = 3\n", 2, "unknown field `retries`"),
        ("[ratelimit]\nsync = \"1s\"\n", 2, "unknown field `sync`"),
        (
            "[[ratelimit.policies]]\nname = \"p\"\nkey = \"ip\"\nlimit = 1\nper = \"1s\"\nwindow = \"1s\"\n",
            6,
            "unknown field `window`",
        ),
    ];
    for (text, line, words) in cases {
        assert_error(&format!("{text}\n{CELL}"), line, &[words]);
    }
}

#[test]
fn wrong_types_point_at_the_value() {
    assert_error(
        &format!("[server]\nlisten = 8080\n{CELL}"),
        2,
        &["invalid type", "integer"],
    );
    assert_error(
        &format!("{CELL}max_in_flight = \"lots\"\n"),
        4,
        &["invalid type", "string"],
    );
    assert_error(
        &format!("[server]\n\nmax_request_body = true\n{CELL}"),
        3,
        &["expected a byte size"],
    );
}

#[test]
fn missing_required_key_points_at_the_table() {
    assert_error(
        &format!("{CELL}\n[[cells]]\nupstreams = [\"a:1\"]\n"),
        5,
        &["missing field `name`"],
    );
    assert_error(
        "[[cells]]\nname = \"c\"\n",
        1,
        &["missing field `upstreams`"],
    );
}

// --- Durations ---------------------------------------------------------------------------------

#[test]
fn bad_duration_names_the_value() {
    assert_error(
        &format!("[server]\nrequest_timeout = \"5 parsecs\"\n{CELL}"),
        2,
        &["invalid duration `5 parsecs`", "server.request_timeout"],
    );
    assert_error(
        &format!(
            "{CELL}[ratelimit]\n[[ratelimit.policies]]\nname = \"p\"\nkey = \"ip\"\nlimit = 1\nper = \"1\"\n"
        ),
        9,
        &["invalid duration `1`", "policy `p`"],
    );
}

#[test]
fn zero_durations_where_they_make_no_sense() {
    let cases = [
        (
            "[server]\nrequest_timeout = \"0s\"\n",
            2,
            "server.request_timeout",
        ),
        (
            "[server]\nconnect_timeout = \"0ms\"\n",
            2,
            "server.connect_timeout",
        ),
        (
            "[redis]\nurl = \"redis://h\"\ntimeout = \"0s\"\n",
            3,
            "redis.timeout",
        ),
        (
            "[ratelimit]\nsync_interval = \"0s\"\n",
            2,
            "ratelimit.sync_interval",
        ),
        (
            "[redis]\nurl = \"redis://h\"\n[delivery]\nbackoff_base = \"0s\"\n",
            4,
            "delivery.backoff_base",
        ),
    ];
    for (text, line, key) in cases {
        assert_error(&format!("{text}{CELL}"), line, &[key, "greater than zero"]);
    }
}

#[test]
fn backoff_max_below_base() {
    assert_error(
        &format!(
            "[redis]\nurl = \"redis://h\"\n[delivery]\nbackoff_base = \"1s\"\nbackoff_max = \"500ms\"\n{CELL}"
        ),
        5,
        &["delivery.backoff_max", "at least", "delivery.backoff_base"],
    );
}

// --- Byte sizes --------------------------------------------------------------------------------

#[test]
fn bad_byte_sizes_name_the_value() {
    assert_error(
        &format!("[server]\nmax_request_body = \"64 megs\"\n{CELL}"),
        2,
        &["invalid byte size `64 megs`", "server.max_request_body"],
    );
    assert_error(
        &format!("[server]\nmax_request_body = \"0MiB\"\n{CELL}"),
        2,
        &["server.max_request_body` must be greater than zero"],
    );
    assert_error(
        &format!("[server]\nmax_request_body = -1\n{CELL}"),
        2,
        &["must not be negative"],
    );
    assert_error(
        &format!("[redis]\nurl = \"redis://h\"\n[delivery]\nmax_body = \"1.5MiB\"\n{CELL}"),
        4,
        &["invalid byte size `1.5MiB`", "delivery.max_body"],
    );
}

#[test]
fn header_limit_bounds() {
    for value in ["\"512B\"", "\"2MiB\"", "0"] {
        assert_error(
            &format!("[server]\nmax_header_bytes = {value}\n{CELL}"),
            2,
            &["server.max_header_bytes", "between 1KiB and 1MiB"],
        );
    }
}

// --- Server ------------------------------------------------------------------------------------

#[test]
fn bad_address_shows_the_expected_form() {
    assert_error(
        &format!("[server]\nadmin_listen = \"localhost:9901\"\n{CELL}"),
        2,
        &[
            "invalid address `localhost:9901`",
            "server.admin_listen",
            "ip:port",
        ],
    );
}

#[test]
fn non_loopback_admin_needs_a_token() {
    assert_error(
        &format!("[server]\nlisten = \"0.0.0.0:8080\"\nadmin_listen = \"0.0.0.0:9901\"\n{CELL}"),
        3,
        &["a non-loopback admin_listen requires admin_token"],
    );
    assert_error(
        &format!("[server]\nadmin_listen = \"10.1.2.3:9901\"\n{CELL}"),
        2,
        &["a non-loopback admin_listen requires admin_token"],
    );
}

#[test]
fn listen_and_admin_listen_must_differ() {
    assert_error(
        &format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n{CELL}"
        ),
        3,
        &["admin_listen", "listen", "same address"],
    );
    // The default admin bind (127.0.0.1:9901) collides with a wildcard listen on 9901.
    assert_error(
        &format!("[server]\n\nlisten = \"0.0.0.0:9901\"\n{CELL}"),
        3,
        &["same address"],
    );
}

#[test]
fn gateway_id_without_spaces() {
    assert_error(
        &format!("[server]\ngateway_id = \"gw 1\"\n{CELL}"),
        2,
        &["server.gateway_id"],
    );
}

// --- Redis -------------------------------------------------------------------------------------

#[test]
fn redis_needs_exactly_one_target() {
    assert_error(
        &format!("\n[redis]\ntimeout = \"10ms\"\n{CELL}"),
        2,
        &["[redis] needs `url"],
    );
    assert_error(
        &format!("[redis]\nurl = \"redis://a\"\ncluster = [\"redis://b\"]\n{CELL}"),
        3,
        &["either `url` or `cluster`, not both"],
    );
    assert_error(
        &format!("[redis]\ncluster = []\n{CELL}"),
        2,
        &["redis.cluster", "at least one"],
    );
}

#[test]
fn redis_urls_need_a_redis_scheme_and_hide_passwords() {
    assert_error(
        &format!("[redis]\nurl = \"http://127.0.0.1:6379\"\n{CELL}"),
        2,
        &[
            "invalid Redis URL `http://127.0.0.1:6379`",
            "redis://host:port",
        ],
    );
    let err = error(&format!(
        "[redis]\ncluster = [\"redis://a:1\",\n  \"redis://:pw@\"]\n{CELL}"
    ));
    assert_eq!(err.line, Some(3));
    assert!(!err.message.contains("pw"), "{err}");
    assert_error(
        &format!("[redis]\ncluster = [\"redis://a:1\", \"redis://a:1\"]\n{CELL}"),
        2,
        &["duplicate node"],
    );
}

// --- Routing -----------------------------------------------------------------------------------

#[test]
fn bad_key_sources_name_the_value() {
    let cases = [
        ("\"body:user\"", "unknown routing key source `body:user`"),
        ("\"header:\"", "`header:` needs a name"),
        ("\"query:\"", "`query:` needs a name"),
        ("\"header:x user\"", "`header:x user`: not a valid header"),
    ];
    for (value, words) in cases {
        assert_error(
            &format!("[routing]\nkey = [\n  \"ip\",\n  {value},\n]\n{CELL}"),
            4,
            &[words],
        );
    }
    assert_error(
        &format!("[routing]\nkey = []\n{CELL}"),
        2,
        &["routing.key", "at least one"],
    );
}

#[test]
fn bad_missing_key_mode() {
    assert_error(
        &format!("[routing]\nmissing_key = \"drop\"\n{CELL}"),
        2,
        &["routing.missing_key", "`drop`", "`reject` or `ip`"],
    );
}

// --- Cells -------------------------------------------------------------------------------------

#[test]
fn at_least_one_cell() {
    assert_file_error("[server]\n", &["at least one [[cells]]"]);
}

#[test]
fn duplicate_cell_names_point_at_the_second_and_name_the_first() {
    let text = "[[cells]]\nname = \"cell-1\"\nupstreams = [\"a:1\"]\n\n[[cells]]\nname = \"cell-1\"\nupstreams = [\"b:1\"]\n";
    assert_error(
        text,
        6,
        &["duplicate cell name `cell-1`", "first defined at line 2"],
    );
}

#[test]
fn bad_cell_names() {
    for name in ["", "cell 1", "cell/1", &"c".repeat(65)] {
        assert_error(
            &format!("[[cells]]\nname = \"{name}\"\nupstreams = [\"a:1\"]\n"),
            2,
            &["invalid cell name"],
        );
    }
}

#[test]
fn empty_upstream_list() {
    assert_error(
        "[[cells]]\nname = \"c\"\nupstreams = []\n",
        3,
        &["cell `c` has no upstreams"],
    );
}

#[test]
fn bad_upstreams_show_the_expected_form() {
    let cases = [
        "http://127.0.0.1:7001",
        "127.0.0.1:7001/api",
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:http",
        ":7001",
    ];
    for value in cases {
        assert_error(
            &format!("[[cells]]\nname = \"c\"\nupstreams = [\"a:1\",\n  \"{value}\"]\n"),
            4,
            &[
                &format!("invalid upstream `{value}`"),
                "expected `host:port`",
            ],
        );
    }
}

#[test]
fn duplicate_upstream_in_a_cell() {
    assert_error(
        "[[cells]]\nname = \"c\"\nupstreams = [\n  \"Cell-A:7001\",\n  \"cell-a:7001\",\n]\n",
        5,
        &["duplicate upstream `cell-a:7001` in cell `c`"],
    );
}

#[test]
fn bad_weights_and_bulkheads() {
    for weight in ["-1.0", "nan", "inf"] {
        assert_error(
            &format!("[[cells]]\nname = \"c\"\nupstreams = [\"a:1\"]\nweight = {weight}\n"),
            4,
            &["invalid weight", "finite number >= 0"],
        );
    }
    assert_error(
        "[[cells]]\nname = \"c\"\nupstreams = [\"a:1\"]\nmax_in_flight = 0\n",
        4,
        &["`max_in_flight` of cell `c` must be at least 1, got 0"],
    );
}

#[test]
fn all_weights_zero() {
    assert_error(
        "\n[[cells]]\nname = \"a\"\nupstreams = [\"a:1\"]\nweight = 0.0\n[[cells]]\nname = \"b\"\nupstreams = [\"b:1\"]\nweight = 0\n",
        2,
        &["all cells have weight 0"],
    );
}

// --- Delivery ----------------------------------------------------------------------------------

#[test]
fn delivery_needs_redis() {
    assert_error(
        &format!("{CELL}\n[delivery]\nworkers = 4\n"),
        5,
        &["[delivery] needs [redis]"],
    );
}

#[test]
fn delivery_ranges() {
    let cases = [
        (
            "max_attempts = 0",
            "delivery.max_attempts` must be at least 1",
        ),
        (
            "max_pending = 0",
            "delivery.max_pending` must be at least 1",
        ),
        ("workers = -1", "delivery.workers` must be at least 0"),
        (
            "max_age = \"0s\"",
            "delivery.max_age` must be greater than zero",
        ),
        (
            "max_body = 0",
            "delivery.max_body` must be greater than zero",
        ),
        ("workers = 5000", "delivery.workers` must be at most 4096"),
        (
            "wait_replicas = 17",
            "delivery.wait_replicas` must be at most 16",
        ),
        (
            "wait_replicas = -1",
            "delivery.wait_replicas` must be at least 0",
        ),
        (
            "enqueue_timeout = \"0s\"",
            "delivery.enqueue_timeout` must be greater than zero",
        ),
        (
            "retention = \"1h\"",
            "delivery.retention` (1h) must be at least `delivery.max_age` (1day)",
        ),
        (
            "visibility_timeout = \"5s\"",
            "delivery.visibility_timeout` (5s) must be longer than `server.request_timeout` (5s)",
        ),
    ];
    for (line, words) in cases {
        assert_error(
            &format!("[redis]\nurl = \"redis://h\"\n[delivery]\n{line}\n{CELL}"),
            4,
            &[words],
        );
    }
}

// --- Rate limits -------------------------------------------------------------------------------

fn policy(body: &str) -> String {
    format!("{CELL}[ratelimit]\nmax_keys = 10\n\n[[ratelimit.policies]]\n{body}")
}

#[test]
fn zero_or_negative_limits() {
    assert_error(
        &policy("name = \"p\"\nkey = \"user\"\nlimit = 0\nper = \"1s\"\n"),
        10,
        &["policy `p`", "limit must be greater than zero"],
    );
    assert_error(
        &policy("name = \"p\"\nkey = \"user\"\nlimit = -5\nper = \"1s\"\n"),
        10,
        &["policy `p`", "limit must be greater than zero, got -5"],
    );
    assert_error(
        &policy("name = \"p\"\nkey = \"user\"\nlimit = 5\nper = \"1s\"\nburst = 0\n"),
        12,
        &["policy `p`", "burst must be greater than zero"],
    );
}

#[test]
fn zero_window() {
    assert_error(
        &policy("name = \"p\"\nkey = \"user\"\nlimit = 5\nper = \"0s\"\n"),
        11,
        &["policy `p`", "`per` must be greater than zero"],
    );
}

#[test]
fn unknown_policy_key_kinds() {
    assert_error(
        &policy("name = \"p\"\nkey = \"tenant\"\nlimit = 5\nper = \"1s\"\n"),
        9,
        &["policy `p`", "unknown policy key `tenant`"],
    );
    assert_error(
        &policy("name = \"p\"\nkey = \"header:\"\nlimit = 5\nper = \"1s\"\n"),
        9,
        &["policy `p`", "needs a header name"],
    );
}

#[test]
fn duplicate_policy_names() {
    let text = policy(
        "name = \"p\"\nkey = \"user\"\nlimit = 5\nper = \"1s\"\n\n[[ratelimit.policies]]\nname = \"p\"\nkey = \"ip\"\nlimit = 5\nper = \"1s\"\n",
    );
    assert_error(
        &text,
        14,
        &[
            "duplicate rate-limit policy name `p`",
            "first defined at line 8",
        ],
    );
}

#[test]
fn bad_policy_names_and_limiter_settings() {
    assert_error(
        &policy("name = \"per user\"\nkey = \"user\"\nlimit = 5\nper = \"1s\"\n"),
        8,
        &["invalid policy name `per user`"],
    );
    assert_error(
        &format!("{CELL}[ratelimit]\nmax_keys = 0\n"),
        5,
        &["ratelimit.max_keys` must be at least 1"],
    );
}

#[test]
fn auto_evacuation_ranges() {
    let table = "[control]\nmin_active_cells = 1\n\n[control.auto_evacuation]\nenabled = true\n";
    let cases: [(&str, &[&str]); 6] = [
        (
            "open_for = \"0s\"",
            &["control.auto_evacuation.open_for", "greater than zero"],
        ),
        (
            "healthy_for = \"soon\"",
            &["control.auto_evacuation.healthy_for", "invalid duration"],
        ),
        (
            "max_auto_evacuated = 0",
            &["control.auto_evacuation.max_auto_evacuated", "at least 1"],
        ),
        (
            "undrain_over = \"25h\"",
            &["control.auto_evacuation.undrain_over", "at most 24h"],
        ),
        ("enabled = \"yes\"", &["invalid type", "boolean"]),
        ("open_after = \"1s\"", &["unknown field `open_after`"]),
    ];
    for (line, words) in cases {
        // A repeated `enabled` would be a TOML error of its own: replace it instead.
        let text = if line.starts_with("enabled") {
            format!("[control.auto_evacuation]\n{line}\n{CELL}")
        } else {
            format!("{table}{line}\n{CELL}")
        };
        let at = if line.starts_with("enabled") { 2 } else { 6 };
        assert_error(&text, at, words);
    }
}
