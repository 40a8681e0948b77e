//! Per-cell containment tuning (`[cells.breaker]` etc.) and per-path default priorities.

use std::time::Duration;

use cell_router::containment::{BreakerConfig, Priority};
use gateway::config::CellTuning;

use crate::support::{CELL, assert_error, parse};

#[test]
fn omitted_tables_keep_the_defaults() {
    let config = parse(CELL);
    assert_eq!(config.cells[0].tuning, CellTuning::default());
    assert!(config.routing.priorities.is_empty());
}

#[test]
fn tuning_tables_override_per_cell() {
    let config = parse(
        "[[cells]]\nname = \"a\"\nupstreams = [\"127.0.0.1:1\"]\n\
         [cells.breaker]\nerror_ratio = 0.25\nmin_requests = 5\nopen_for = \"2s\"\n\
         [cells.outlier]\nconsecutive_failures = 3\nbase_ejection = \"1s\"\n\
         [cells.health_check]\npath = \"/ready\"\ninterval = \"2s\"\ntimeout = \"500ms\"\n\
         [cells.retry]\nmax_attempts = 3\nbudget_ratio = 0.2\n\
         [[cells]]\nname = \"b\"\nupstreams = [\"127.0.0.1:2\"]\n",
    );
    let a = &config.cells[0].tuning;
    assert_eq!(a.breaker.error_ratio, 0.25);
    assert_eq!(a.breaker.min_requests, 5);
    assert_eq!(a.breaker.open_for, Duration::from_secs(2));
    assert_eq!(a.breaker.window, BreakerConfig::default().window);
    assert_eq!(a.outlier.consecutive_failures, 3);
    assert_eq!(a.outlier.base_ejection, Duration::from_secs(1));
    assert_eq!(a.health_check.path, "/ready");
    assert_eq!(a.health_check.timeout, Duration::from_millis(500));
    assert_eq!(a.retry_policy.max_attempts, 3);
    assert_eq!(a.retry_budget.ratio, 0.2);
    // The second cell is untouched.
    assert_eq!(config.cells[1].tuning, CellTuning::default());
}

#[test]
fn bad_tuning_values_name_the_cell_and_key() {
    let head = "[[cells]]\nname = \"a\"\nupstreams = [\"127.0.0.1:1\"]\n";
    assert_error(
        &format!("{head}[cells.breaker]\nerror_ratio = 1.5\n"),
        4,
        &["cell `a`", "`breaker.error_ratio`"],
    );
    assert_error(
        &format!("{head}[cells.breaker]\nopen_for = \"soon\"\n"),
        5,
        &["`breaker.open_for` of cell `a`"],
    );
    assert_error(
        &format!("{head}[cells.health_check]\ninterval = \"1s\"\ntimeout = \"2s\"\n"),
        4,
        &["`health_check.timeout`", "at most interval"],
    );
    assert_error(
        &format!("{head}[cells.health_check]\npath = \"healthz\"\n"),
        5,
        &["must start with `/`"],
    );
    assert_error(
        &format!("{head}[cells.retry]\nbudget_min_per_second = -1\n"),
        5,
        &["`retry.budget_min_per_second` of cell `a`"],
    );
    assert_error(
        &format!("{head}[cells.outlier]\nejections = 3\n"),
        5,
        &["unknown field `ejections`"],
    );
}

#[test]
fn path_priorities_sort_longest_first_and_reject_bad_entries() {
    let config = parse(&format!(
        "[[routing.priorities]]\nprefix = \"/reports\"\npriority = \"batch\"\n\
         [[routing.priorities]]\nprefix = \"/reports/urgent\"\npriority = \"CRITICAL\"\n{CELL}"
    ));
    assert_eq!(
        config.routing.priorities,
        [
            ("/reports/urgent".to_owned(), Priority::Critical),
            ("/reports".to_owned(), Priority::Batch),
        ]
    );
    assert_error(
        &format!("[[routing.priorities]]\nprefix = \"/x\"\npriority = \"high\"\n{CELL}"),
        3,
        &["invalid priority", "`batch`"],
    );
    assert_error(
        &format!("[[routing.priorities]]\nprefix = \"x\"\npriority = \"batch\"\n{CELL}"),
        2,
        &["must start with `/`"],
    );
    assert_error(
        &format!(
            "[[routing.priorities]]\nprefix = \"/x\"\npriority = \"batch\"\n\
             [[routing.priorities]]\nprefix = \"/x\"\npriority = \"normal\"\n{CELL}"
        ),
        5,
        &["duplicate"],
    );
}

#[test]
fn the_enqueue_budget_defaults_to_the_redis_timeout() {
    let with = |extra: &str| {
        parse(&format!(
            "[redis]\nurl = \"redis://h\"\n[delivery]\n{extra}\n{CELL}"
        ))
        .delivery
        .unwrap()
        .enqueue_timeout
    };
    assert_eq!(with(""), None);
    assert_eq!(
        with("enqueue_timeout = \"250ms\""),
        Some(Duration::from_millis(250))
    );
}

#[test]
fn enqueues_wait_for_a_replica_on_a_cluster_by_default() {
    let with = |redis: &str, extra: &str| {
        parse(&format!("[redis]\n{redis}\n[delivery]\n{extra}\n{CELL}"))
            .delivery
            .unwrap()
            .wait_replicas
    };
    assert_eq!(with("url = \"redis://h\"", ""), 0);
    assert_eq!(with("cluster = [\"redis://h:7000\"]", ""), 1);
    assert_eq!(
        with("cluster = [\"redis://h:7000\"]", "wait_replicas = 0"),
        0
    );
    assert_eq!(with("url = \"redis://h\"", "wait_replicas = 2"), 2);
}
