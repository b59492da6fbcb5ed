//! Figures for the MongoDB store's task search: how long the first search of
//! a workspace takes (the node loads the workspace into its index), a
//! search when nothing changed (one catch-up query that finds nothing new),
//! and a search right after another node wrote a task; plus the node's
//! resident memory before and after the load.
//!
//! ```sh
//! scripts/mongo-test-servers.sh start && source target/mongo-test-servers.env
//! cargo run --release --example search_bench -- "$MONGO_NX_URI" 5000
//! ```
//!
//! It uses a fresh database `huddle_bench_<random>` and drops it at the end.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use huddle::store::MongoStore;
use huddle_actors::ids::{new_id, UserId};
use huddle_actors::model::{NewProject, NewTask, Priority, TaskStatus, User};
use huddle_actors::store::prelude::*;

const WORDS: [&str; 12] = [
    "payment",
    "service",
    "deploy",
    "invoice",
    "release",
    "roadmap",
    "backend",
    "frontend",
    "database",
    "migration",
    "customer",
    "report",
];

/// Resident set size of this process, from /proc (Linux), in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let uri = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: search_bench MONGODB_URI [TASKS]"))?;
    let n: usize = args.next().map_or(Ok(2000), |s| s.parse())?;
    let db = format!("huddle_bench_{}", &new_id()[..12]);
    let writer = MongoStore::connect(&uri, &db).await?;
    let reader = MongoStore::connect(&uri, &db).await?;

    let owner = writer
        .create_user(User {
            id: UserId(new_id()),
            email: None,
            name: "bench".into(),
            username: format!("bench{}", new_id()),
            password_hash: None,
            created_at: chrono::Utc::now(),
        })
        .await?;
    let ws = writer
        .create_workspace("bench".into(), owner.id.clone())
        .await?;
    let project = writer
        .create_project(NewProject {
            workspace_id: ws.id.clone(),
            name: "bench".into(),
            description: None,
            created_by: owner.id.clone(),
        })
        .await?;
    let new_task = |i: usize| NewTask {
        project_id: project.id.clone(),
        title: format!("{} the {} {i}", WORDS[i % 12], WORDS[(i / 12) % 12]),
        description: Some(format!(
            "{} for {}",
            WORDS[(i * 7) % 12],
            WORDS[(i * 5) % 12]
        )),
        status: TaskStatus::Todo,
        priority: Priority::Medium,
        assignee_id: None,
        tags: vec![WORDS[(i * 3) % 12].to_owned()],
        due_date: None,
        created_by: owner.id.clone(),
    };
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let made = join_all(chunk.iter().map(|&i| writer.create_task(new_task(i)))).await;
        for m in made {
            m?;
        }
    }
    println!("{n} tasks created in {:.1?}", started.elapsed());

    let before = rss_mib();
    let t = Instant::now();
    let first = reader.search_tasks(&ws.id, "paymnet", 0, 20).await?;
    let load = t.elapsed();
    let after = rss_mib();
    println!(
        "first search (loads the workspace): {load:.1?}, {} hits; RSS {before:.1} -> {after:.1} MiB",
        first.total
    );

    // Each catch-up re-reads the writes of the last clock margin (10 s by
    // default): first while the tasks just created are in it, then after.
    for label in ["within 10 s of the writes", "after the margin"] {
        let mut idle = Vec::new();
        for i in 0..20 {
            let t = Instant::now();
            reader.search_tasks(&ws.id, WORDS[i % 12], 0, 20).await?;
            idle.push(t.elapsed());
        }
        println!(
            "search, nothing changed, {label}: median {:.2?} (20 searches)",
            median(idle)
        );
        tokio::time::sleep(Duration::from_secs(11)).await;
    }

    let mut after_write = Vec::new();
    for i in 0..20 {
        let mut task = new_task(n + i);
        task.title = format!("needle{i} {}", task.title);
        let made = writer.create_task(task).await?;
        let t = Instant::now();
        let hits = reader
            .search_tasks(&ws.id, &format!("needle{i}"), 0, 20)
            .await?;
        after_write.push(t.elapsed());
        // (needle1 also finds needle0: one typo.)
        anyhow::ensure!(
            hits.items.iter().any(|t| t.id == made.id),
            "the other node's write was not found"
        );
    }
    println!(
        "search right after another node's write: median {:.2?} (20 searches, each found it)",
        median(after_write)
    );

    writer.database().drop().await?;
    Ok(())
}
