//! The dashboards, alert rules and README use only metrics the code exports, so none of them
//! can silently break when a metric is renamed.

use std::{collections::BTreeSet, fs, path::Path};

use shared::observability::metrics::CATALOG;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every `msgsvc_*` metric name in the text, with histogram series suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("msgsvc_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let preceded_by_word =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded_by_word {
            let name = &text[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| is_histogram(b)))
                .unwrap_or(name);
            names.insert(base.to_string());
        }
        i = end.max(start + 1);
    }
    names
}

fn is_histogram(name: &str) -> bool {
    CATALOG
        .iter()
        .any(|m| m.name == name && m.kind == shared::observability::metrics::Kind::Histogram)
}

fn exported(name: &str) -> bool {
    CATALOG.iter().any(|m| m.name == name)
}

#[test]
fn dashboards_and_alerts_use_only_exported_metrics() {
    let mut paths = Vec::new();
    files(&repo().join("monitoring"), &mut paths);
    let mut checked = 0;
    for path in paths.iter().filter(|p| {
        matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("json" | "yml" | "yaml")
        )
    }) {
        let text = fs::read_to_string(path).unwrap();
        if path.extension().unwrap() == "json" {
            let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
            for panel in dashboard["panels"].as_array().unwrap() {
                let exprs: Vec<&str> = panel["targets"]
                    .as_array()
                    .map(|t| t.iter().filter_map(|t| t["expr"].as_str()).collect())
                    .unwrap_or_default();
                assert!(
                    !exprs.is_empty(),
                    "panel {} of {} has no query",
                    panel["title"],
                    path.display()
                );
                checked += exprs.len();
            }
        }
        for name in metric_names(&text) {
            assert!(
                exported(&name),
                "{} uses {name}, which the code does not export",
                path.display()
            );
        }
    }
    assert!(
        checked > 10,
        "the dashboard's queries were read ({checked})"
    );
}

#[test]
fn every_exported_metric_is_documented_and_on_the_dashboard() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let dashboard =
        fs::read_to_string(repo().join("monitoring/grafana/dashboards/msgsvc-overview.json"))
            .unwrap();
    let on_dashboard = metric_names(&dashboard);
    for m in CATALOG {
        assert!(
            readme.contains(m.name),
            "README does not document {}",
            m.name
        );
        assert!(
            on_dashboard.contains(m.name),
            "the dashboard does not show {}",
            m.name
        );
    }
    for name in metric_names(&readme) {
        assert!(
            exported(&name),
            "README documents {name}, which the code does not export"
        );
    }
}

#[test]
fn the_name_scanner_finds_names_and_strips_histogram_suffixes() {
    let names = metric_names(
        r#"rate(msgsvc_processing_duration_seconds_bucket[5m]) + msgsvc_relay_sweeps_total x_msgsvc_no"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "msgsvc_processing_duration_seconds",
            "msgsvc_relay_sweeps_total"
        ]
    );
}
