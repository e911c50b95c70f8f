//! ACL evaluation speed: an ACL compiled from 100 policies x 50 path rules (exact,
//! prefix `*` and `+` segment rules), asked about exact hits, prefix hits, segment
//! hits, misses, and a mix of all four. Each iteration evaluates one request, so the
//! reported time is the time per evaluation.
//!
//! Run: `cargo bench -p coffer-policies --bench acl -- --warm-up-time 1 --measurement-time 3`

use coffer_policies::{parse, Acl, AclRequest, Operation, Policy};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

const POLICIES: usize = 100;
const RULES_PER_POLICY: usize = 50;

/// Policy `i`, rule `j`: the pattern and its capabilities (one of five shapes).
fn rule(i: usize, j: usize) -> (String, &'static str) {
    match j % 5 {
        0 => (
            format!("secret/data/team{i}/app{j}"),
            r#"["read", "update"]"#,
        ),
        1 => (
            format!("secret/data/team{i}/shared{j}/*"),
            r#"["read", "list"]"#,
        ),
        2 => (format!("kv/+/team{i}/config{j}"), r#"["read"]"#),
        3 => (format!("transit/encrypt/key-{i}-{j}"), r#"["update"]"#),
        _ => (
            format!("auth/+/role/team{i}-{j}/*"),
            r#"["create", "update"]"#,
        ),
    }
}

fn policies() -> Vec<Policy> {
    (0..POLICIES)
        .map(|i| {
            let text: String = (0..RULES_PER_POLICY)
                .map(|j| {
                    let (pattern, capabilities) = rule(i, j);
                    format!("path \"{pattern}\" {{\n  capabilities = {capabilities}\n}}\n")
                })
                .collect();
            parse(&format!("team{i}"), &text).expect("bench policy parses")
        })
        .collect()
}

fn requests(shape: &str) -> Vec<String> {
    (0..64)
        .map(|n| {
            let (i, j) = ((n * 37) % POLICIES, (n * 11) % 10);
            match shape {
                "exact" => format!("secret/data/team{i}/app{}", j / 5 * 5),
                "prefix" => format!("secret/data/team{i}/shared{}/db/password", j / 5 * 5 + 1),
                "segment" => format!("kv/prod/team{i}/config{}", j / 5 * 5 + 2),
                "segment_prefix" => {
                    format!("auth/approle/role/team{i}-{}/secret-id", j / 5 * 5 + 4)
                }
                _ => format!("secret/data/team{i}/unknown{n}"),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let policies = policies();
    let acl = Acl::new(&policies);

    let mut group = c.benchmark_group("acl_100x50");
    for shape in ["exact", "prefix", "segment", "segment_prefix", "miss"] {
        let paths = requests(shape);
        let mut n = 0usize;
        group.bench_function(format!("allow/{shape}"), |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                let path = &paths[n % paths.len()];
                acl.allow(black_box(&AclRequest::new(path, Operation::Read)))
            })
        });
    }
    let mix: Vec<String> = ["exact", "prefix", "segment", "segment_prefix", "miss"]
        .iter()
        .flat_map(|shape| requests(shape))
        .collect();
    let mut n = 0usize;
    group.bench_function("allow/mix", |b| {
        b.iter(|| {
            n = n.wrapping_add(7);
            let path = &mix[n % mix.len()];
            acl.allow(black_box(&AclRequest::new(path, Operation::Read)))
        })
    });
    group.bench_function("capabilities/mix", |b| {
        b.iter(|| {
            n = n.wrapping_add(7);
            acl.capabilities(black_box(&mix[n % mix.len()]))
        })
    });
    group.sample_size(10);
    group.bench_function("compile", |b| b.iter(|| Acl::new(black_box(&policies))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
