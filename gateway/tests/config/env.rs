//! `${NAME}` substitution: values only, every kind of string value, exact error lines.

use std::collections::HashMap;
use std::time::Duration;

use gateway::config::Config;

use crate::support::{CELL, ORIGIN, assert_error, parse};

#[test]
fn substitutes_in_addresses_durations_sizes_and_lists() {
    let config = parse(
        r#"[server]
listen = "0.0.0.0:${PORT}"
request_timeout = "${PORT}ms"
max_request_body = "${PORT}KiB"
[redis]
url = "redis://${REDIS_HOST}:6379"
[[cells]]
name = "cell-${PORT}"
upstreams = ["${REDIS_HOST}:${PORT}"]
"#,
    );
    assert_eq!(config.server.listen.port(), 8181);
    assert_eq!(config.server.request_timeout, Duration::from_millis(8181));
    assert_eq!(config.server.max_request_body, 8181 * 1024);
    assert_eq!(
        config.redis.unwrap().target,
        gateway::config::RedisTarget::Single("redis://redis.internal:6379".into())
    );
    assert_eq!(config.cells[0].name, "cell-8181");
    assert_eq!(
        config.cells[0].upstreams[0].authority(),
        "redis.internal:8181"
    );
}

#[test]
fn missing_variable_is_named_at_the_line_of_the_value() {
    let text =
        format!("[server]\nlisten = \"0.0.0.0:8080\"\nadmin_token = \"${{NOPE_TOKEN}}\"\n{CELL}");
    assert_error(&text, 3, &["environment variable NOPE_TOKEN is not set"]);

    let no_env: HashMap<String, String> = HashMap::new();
    let err = Config::parse(include_str!("spec_example.toml"), ORIGIN, &no_env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cellgate.toml:4: environment variable CELLGATE_ADMIN_TOKEN is not set"
    );
}

#[test]
fn missing_variable_inside_an_array_points_at_its_element() {
    let text = "[[cells]]\nname = \"c\"\nupstreams = [\n  \"a:1\",\n  \"${NOPE_HOST}:1\",\n]\n";
    assert_error(text, 5, &["NOPE_HOST"]);
}

#[test]
fn double_dollar_brace_is_a_literal() {
    let config = parse(&format!(
        "[server]\nadmin_token = \"$${{NOT_A_VAR}}x\"\n{CELL}"
    ));
    assert_eq!(config.server.admin_token.as_deref(), Some("${NOT_A_VAR}x"));
}

#[test]
fn unterminated_reference_is_an_error() {
    assert_error(
        &format!("[server]\n\nadmin_token = \"abc${{CELLGATE\"\n{CELL}"),
        3,
        &["unterminated `${`"],
    );
}

#[test]
fn invalid_variable_name_is_an_error() {
    assert_error(
        &format!("[server]\ngateway_id = \"${{GW:-default}}\"\n{CELL}"),
        2,
        &["invalid environment variable name `GW:-default`"],
    );
}

#[test]
fn comments_and_keys_are_never_substituted() {
    let text = format!(
        "# admin_token = \"${{NOPE_IN_COMMENT}}\"\n[server] # ${{NOPE_TOO}}\n\"${{NOPE_KEY}}\" = 1\n{CELL}"
    );
    // The comment references are ignored; the quoted key is reported verbatim as unknown.
    assert_error(&text, 3, &["unknown field `${NOPE_KEY}`"]);
}

#[test]
fn empty_admin_token_after_substitution_means_none() {
    let config = parse(&format!("[server]\nadmin_token = \"${{EMPTY}}\"\n{CELL}"));
    assert_eq!(config.server.admin_token, None);
    assert_error(
        &format!("[server]\nadmin_listen = \"0.0.0.0:9901\"\nadmin_token = \"${{EMPTY}}\"\n{CELL}"),
        2,
        &["a non-loopback admin_listen requires admin_token"],
    );
}

#[test]
fn secrets_do_not_leak_into_error_messages() {
    let err = Config::parse(
        &format!("[server]\nadmin_token = \"hunter2${{\"\n{CELL}"),
        ORIGIN,
        &HashMap::<String, String>::new(),
    )
    .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}
