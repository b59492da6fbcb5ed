//! The collaboration layer through the real server: HTTP writes and the
//! `/` namespace events they cause (who receives them and who does not),
//! permissions, member removal, notifications, search with a typo, and
//! per-user presence, with the raw Socket.IO client of `support::sio`.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::app::{spawn_app, TestApp, TestUser};
use support::sio::SioClient;

const QUIET: Duration = Duration::from_millis(400);

async fn workspace(app: &TestApp, owner: &TestUser) -> String {
    let (s, b) = app
        .post(
            "/api/v1/workspaces",
            Some(&owner.token),
            json!({ "name": "Acme" }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["role"], "owner");
    b["id"].as_str().unwrap().to_owned()
}

async fn add(app: &TestApp, ws: &str, by: &TestUser, user: &TestUser, role: &str) {
    let (s, b) = app
        .post(
            &format!("/api/v1/workspaces/{ws}/members"),
            Some(&by.token),
            json!({ "userId": user.id, "role": role }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
}

async fn project(app: &TestApp, ws: &str, by: &TestUser) -> String {
    let (s, b) = app
        .post(
            &format!("/api/v1/workspaces/{ws}/projects"),
            Some(&by.token),
            json!({ "name": "Launch" }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["workspaceId"], ws);
    b["id"].as_str().unwrap().to_owned()
}

async fn task(app: &TestApp, project: &str, by: &TestUser, body: Value) -> Value {
    let (s, b) = app
        .post(
            &format!("/api/v1/projects/{project}/tasks"),
            Some(&by.token),
            body,
        )
        .await;
    assert_eq!(s, 201, "{b}");
    b
}

/// Alice's new workspace with the users named in `members` added in their
/// roles: Alice, them (in order), and the workspace id.
async fn team(app: &TestApp, members: &[(&str, &str)]) -> (TestUser, Vec<TestUser>, String) {
    let alice = app.register("Alice").await;
    let ws = workspace(app, &alice).await;
    let mut users = Vec::new();
    for (name, role) in members {
        let user = app.register(name).await;
        add(app, &ws, &alice, &user, role).await;
        users.push(user);
    }
    (alice, users, ws)
}

async fn join(c: &mut SioClient, id: u64, rooms: Value) -> Value {
    c.emit_ack("/", id, "room:join", rooms).await
}

#[actix_web::test]
async fn task_and_comment_events_reach_their_rooms_only() {
    let app = spawn_app(&[]).await;
    let (alice, members, ws) = team(&app, &[("Bob", "member"), ("Dave", "member")]).await;
    let [bob, dave] = <[TestUser; 2]>::try_from(members).unwrap_or_else(|_| unreachable!());
    let carol = app.register("Carol").await;
    let p1 = project(&app, &ws, &alice).await;
    let p2 = project(&app, &ws, &alice).await;

    let mut alice_a = SioClient::connect(app.port, "/", &alice.token).await;
    let mut alice_b = SioClient::connect(app.port, "/", &alice.token).await;
    let mut bob_s = SioClient::connect(app.port, "/", &bob.token).await;
    let mut dave_s = SioClient::connect(app.port, "/", &dave.token).await;
    let mut carol_s = SioClient::connect(app.port, "/", &carol.token).await;
    for (c, id) in [(&mut alice_a, 1), (&mut alice_b, 1), (&mut bob_s, 1)] {
        let ack = join(c, id, json!({ "projectId": p1 })).await;
        assert_eq!(ack["ok"], true, "{ack}");
        assert_eq!(ack["rooms"], json!([format!("project:{p1}")]));
    }
    assert_eq!(
        join(&mut dave_s, 1, json!({ "projectId": p2 })).await["ok"],
        true
    );
    let denied = join(&mut carol_s, 1, json!({ "projectId": p1 })).await;
    assert_eq!(denied["ok"], false);
    assert_eq!(denied["error"]["code"], "forbidden");
    let denied = join(&mut carol_s, 2, json!({ "workspaceId": ws })).await;
    assert_eq!(denied["error"]["code"], "forbidden");
    let bad = join(&mut carol_s, 3, json!({})).await;
    assert_eq!(bad["error"]["code"], "bad_request");

    // task:created goes to the project room: both of Alice's devices, Bob.
    let t = task(
        &app,
        &p1,
        &alice,
        json!({ "title": "Ship it", "tags": ["release"] }),
    )
    .await;
    let tid = t["id"].as_str().unwrap().to_owned();
    assert_eq!(t["status"], "todo");
    assert_eq!(t["priority"], "medium");
    for c in [&mut alice_a, &mut alice_b, &mut bob_s] {
        let e = c.expect_event("/", "task:created").await;
        assert_eq!(e["task"]["id"], tid.as_str());
        assert_eq!(e["workspaceId"], ws.as_str());
        assert_eq!(e["projectId"], p1.as_str());
        assert_eq!(e["actorId"], alice.id.as_str());
    }

    // Bob also joins the task room: events for both rooms arrive once.
    assert_eq!(
        join(&mut bob_s, 2, json!({ "taskId": tid })).await["ok"],
        true
    );
    let (s, b) = app
        .send(
            "PATCH",
            &format!("/api/v1/tasks/{tid}"),
            Some(&alice.token),
            Some(json!({ "status": "in_progress", "title": "Ship it now" })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let e = bob_s.expect_event("/", "task:updated").await;
    assert_eq!(e["task"]["title"], "Ship it now");
    let e = bob_s.expect_event("/", "task:moved").await;
    assert_eq!(e["fromStatus"], "todo");
    assert_eq!(e["toStatus"], "in_progress");
    alice_b.expect_event("/", "task:moved").await;

    // Comments go to the task room only.
    let (s, c) = app
        .post(
            &format!("/api/v1/tasks/{tid}/comments"),
            Some(&alice.token),
            json!({ "body": "looks good" }),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let cid = c["id"].as_str().unwrap().to_owned();
    let e = bob_s.expect_event("/", "comment:created").await;
    assert_eq!(e["comment"]["body"], "looks good");
    assert_eq!(e["taskId"], tid.as_str());
    let (s, _) = app
        .send(
            "PATCH",
            &format!("/api/v1/comments/{cid}"),
            Some(&alice.token),
            Some(json!({ "body": "looks great" })),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        bob_s.expect_event("/", "comment:updated").await["comment"]["body"],
        "looks great"
    );
    // Bob may not edit Alice's comment.
    let (s, _) = app
        .send(
            "DELETE",
            &format!("/api/v1/comments/{cid}"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .send(
            "DELETE",
            &format!("/api/v1/comments/{cid}"),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(s, 200);
    bob_s.expect_event("/", "comment:deleted").await;

    let (s, _) = app
        .send(
            "DELETE",
            &format!("/api/v1/tasks/{tid}"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        bob_s.expect_event("/", "task:deleted").await["task"]["id"],
        tid.as_str()
    );
    alice_a.expect_event("/", "task:deleted").await;
    let (s, _) = app
        .get(&format!("/api/v1/tasks/{tid}"), Some(&alice.token))
        .await;
    assert_eq!(s, 404, "deleted tasks are gone");

    // The other project's room and the non-member heard nothing.
    dave_s.expect_no_event("/", "task:created", QUIET).await;
    carol_s.expect_no_event("/", "task:created", QUIET).await;
}

#[actix_web::test]
async fn member_changes_and_removal() {
    let app = spawn_app(&[]).await;
    let alice = app.register("Alice").await;
    let bob = app.register("Bob").await;
    let carol = app.register("Carol").await;
    let ws = workspace(&app, &alice).await;
    add(&app, &ws, &alice, &bob, "member").await;
    let p = project(&app, &ws, &alice).await;
    let mut bob_s = SioClient::connect(app.port, "/", &bob.token).await;
    let ack = join(&mut bob_s, 1, json!({ "workspaceId": ws, "projectId": p })).await;
    assert_eq!(ack["rooms"].as_array().unwrap().len(), 2, "{ack}");

    add(&app, &ws, &alice, &carol, "viewer").await;
    let e = bob_s.expect_event("/", "member:joined").await;
    assert_eq!(e["member"]["userId"], carol.id.as_str());
    assert_eq!(e["member"]["role"], "viewer");
    assert_eq!(e["actorId"], alice.id.as_str());

    // Adding twice conflicts; unknown email is 404; members can't manage.
    let (s, _) = app
        .post(
            &format!("/api/v1/workspaces/{ws}/members"),
            Some(&alice.token),
            json!({ "userId": carol.id, "role": "member" }),
        )
        .await;
    assert_eq!(s, 409);
    let (s, _) = app
        .post(
            &format!("/api/v1/workspaces/{ws}/members"),
            Some(&alice.token),
            json!({ "email": "nobody@example.test" }),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .send(
            "PATCH",
            &format!("/api/v1/workspaces/{ws}/members/{}", carol.id),
            Some(&bob.token),
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_eq!(s, 403);
    // The owner can be neither demoted nor removed.
    let (s, _) = app
        .send(
            "PATCH",
            &format!("/api/v1/workspaces/{ws}/members/{}", alice.id),
            Some(&alice.token),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(s, 409);
    let (s, _) = app
        .send(
            "DELETE",
            &format!("/api/v1/workspaces/{ws}/members/{}", alice.id),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(s, 409);

    // A viewer reads but never writes.
    let (s, _) = app
        .post(
            &format!("/api/v1/projects/{p}/tasks"),
            Some(&carol.token),
            json!({ "title": "nope" }),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .get(&format!("/api/v1/projects/{p}/tasks"), Some(&carol.token))
        .await;
    assert_eq!(s, 200);

    let (s, b) = app
        .send(
            "PATCH",
            &format!("/api/v1/workspaces/{ws}/members/{}", bob.id),
            Some(&alice.token),
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        bob_s.expect_event("/", "member:role_changed").await["member"]["role"],
        "admin"
    );

    // Removal: Bob hears member:left, then nothing more from the workspace.
    let (s, _) = app
        .send(
            "DELETE",
            &format!("/api/v1/workspaces/{ws}/members/{}", bob.id),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        bob_s.expect_event("/", "member:left").await["member"]["userId"],
        bob.id.as_str()
    );
    let t = task(&app, &p, &alice, json!({ "title": "after" })).await;
    bob_s.expect_no_event("/", "task:created", QUIET).await;
    let (s, _) = app
        .get(
            &format!("/api/v1/tasks/{}", t["id"].as_str().unwrap()),
            Some(&bob.token),
        )
        .await;
    assert_eq!(s, 404);
    let denied = join(&mut bob_s, 2, json!({ "projectId": p })).await;
    assert_eq!(denied["error"]["code"], "forbidden");
    let (s, _) = app
        .get(&format!("/api/v1/workspaces/{ws}"), Some(&bob.token))
        .await;
    assert_eq!(s, 404);
}

#[actix_web::test]
async fn bad_input_and_non_members_get_contract_errors() {
    let app = spawn_app(&[]).await;
    let alice = app.register("Alice").await;
    let eve = app.register("Eve").await;
    let ws = workspace(&app, &alice).await;
    let p = project(&app, &ws, &alice).await;
    let t = task(&app, &p, &alice, json!({ "title": "secret" })).await;
    let tid = t["id"].as_str().unwrap();
    let huge = "x".repeat(5000);
    let tasks = format!("/api/v1/projects/{p}/tasks");
    let cases: Vec<(&str, String, Option<Value>, u16)> = vec![
        ("POST", "/api/v1/workspaces".into(), Some(json!({})), 400),
        (
            "POST",
            "/api/v1/workspaces".into(),
            Some(json!({ "name": 5 })),
            400,
        ),
        (
            "POST",
            "/api/v1/workspaces".into(),
            Some(json!({ "name": huge })),
            400,
        ),
        ("POST", tasks.clone(), Some(json!({})), 400),
        ("POST", tasks.clone(), Some(json!({ "title": "" })), 400),
        ("POST", tasks.clone(), Some(json!({ "title": huge })), 400),
        (
            "POST",
            tasks.clone(),
            Some(json!({ "title": "x", "status": "nope" })),
            400,
        ),
        (
            "POST",
            tasks.clone(),
            Some(json!({ "title": "x", "tags": "a" })),
            400,
        ),
        (
            "POST",
            tasks.clone(),
            Some(json!({ "title": "x", "dueDate": "soon" })),
            400,
        ),
        (
            "POST",
            tasks.clone(),
            Some(json!({ "title": "x", "assigneeId": eve.id })),
            400,
        ),
        ("GET", format!("{tasks}?limit=0"), None, 400),
        ("GET", format!("{tasks}?status=sleeping"), None, 400),
        ("GET", format!("{tasks}?cursor=abc"), None, 400),
        (
            "PATCH",
            format!("/api/v1/tasks/{tid}"),
            Some(json!({ "priority": 3 })),
            400,
        ),
        ("GET", "/api/v1/tasks/unknown".into(), None, 404),
        ("GET", "/api/v1/projects/unknown/tasks".into(), None, 404),
        (
            "GET",
            format!("/api/v1/tasks/{}", "z".repeat(300)),
            None,
            400,
        ),
        ("GET", format!("/api/v1/workspaces/{ws}/search"), None, 400),
        (
            "GET",
            format!("/api/v1/workspaces/{ws}/search?q=a&page=0"),
            None,
            400,
        ),
        (
            "POST",
            "/api/v1/notifications/unknown/read".into(),
            None,
            404,
        ),
        (
            "GET",
            "/api/v1/notifications?unread=maybe".into(),
            None,
            400,
        ),
    ];
    for (method, path, body, want) in cases {
        let (s, b) = app.send(method, &path, Some(&alice.token), body).await;
        assert_eq!(s, want, "{method} {path}: {b}");
        assert!(b["error"]["code"].is_string(), "{method} {path}: {b}");
    }
    // A non-member learns nothing: 404 everywhere.
    for path in [
        format!("/api/v1/workspaces/{ws}"),
        format!("/api/v1/workspaces/{ws}/members"),
        format!("/api/v1/workspaces/{ws}/projects"),
        format!("/api/v1/workspaces/{ws}/search?q=secret"),
        format!("/api/v1/projects/{p}/tasks"),
        format!("/api/v1/tasks/{tid}"),
        format!("/api/v1/tasks/{tid}/comments"),
    ] {
        let (s, b) = app.get(&path, Some(&eve.token)).await;
        assert_eq!(s, 404, "{path}: {b}");
        assert_eq!(b["error"]["code"], "not_found");
    }
    let (s, _) = app
        .send(
            "PATCH",
            &format!("/api/v1/tasks/{tid}"),
            Some(&eve.token),
            Some(json!({ "title": "mine" })),
        )
        .await;
    assert_eq!(s, 404);
    let mut eve_s = SioClient::connect(app.port, "/", &eve.token).await;
    let denied = join(&mut eve_s, 1, json!({ "taskId": tid })).await;
    assert_eq!(denied["error"]["code"], "forbidden");
}

/// `GET /projects/{id}/tasks` as `user` with `query`; asserts 200 and the
/// list shape of PROTOCOL.md section 3 (`{ items, nextCursor }`, the cursor
/// a string or null — never absent); returns the ids and the cursor.
async fn task_page(
    app: &TestApp,
    project: &str,
    user: &TestUser,
    query: &str,
) -> (Vec<String>, Option<String>) {
    let (s, b) = app
        .get(
            &format!("/api/v1/projects/{project}/tasks?{query}"),
            Some(&user.token),
        )
        .await;
    assert_eq!(s, 200, "?{query}: {b}");
    let ids = b["items"]
        .as_array()
        .unwrap_or_else(|| panic!("?{query}: items is an array: {b}"))
        .iter()
        .map(|t| {
            assert_eq!(t["projectId"], project, "?{query}: {t}");
            t["id"].as_str().expect("task id").to_owned()
        })
        .collect();
    let cursor = match b.get("nextCursor") {
        Some(Value::Null) => None,
        Some(Value::String(c)) => Some(c.clone()),
        other => panic!("?{query}: nextCursor must be a string or null, got {other:?}"),
    };
    (ids, cursor)
}

/// Follows `nextCursor` from the page of `query` after `start` (the first
/// page when `None`) until it is null; returns every page's ids.
async fn walk_tasks(
    app: &TestApp,
    project: &str,
    user: &TestUser,
    query: &str,
    start: Option<String>,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor = start;
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_owned(),
        };
        let (ids, next) = task_page(app, project, user, &q).await;
        pages.push(ids);
        assert!(pages.len() <= 50, "paging ?{query} does not end");
        match next {
            Some(c) => cursor = Some(c),
            None => return pages,
        }
    }
}

#[actix_web::test]
async fn task_lists_filter_by_status_and_assignee_and_page_by_cursor() {
    // The answer is `{ items, nextCursor }`: tasks of the project, oldest
    // first (creation order, as src/http/tasks.rs documents), deleted ones
    // left out; `nextCursor` is a string while more tasks match and null on
    // the last page — also when that page is exactly full, so a walk never
    // ends on an empty page.
    let app = spawn_app(&[]).await;
    let (alice, members, ws) = team(&app, &[("Bob", "member"), ("Carol", "viewer")]).await;
    let [bob, carol] = <[TestUser; 2]>::try_from(members).unwrap_or_else(|_| unreachable!());
    let p = project(&app, &ws, &alice).await;
    let other = project(&app, &ws, &alice).await;

    let mut ids = Vec::new();
    for (title, status, assignee) in [
        ("t1", "todo", Some(&bob)),
        ("t2", "in_progress", Some(&bob)),
        ("t3", "todo", None),
        ("t4", "done", Some(&alice)),
        ("t5", "todo", Some(&bob)),
        ("t6", "in_review", Some(&alice)),
        ("t7", "todo", Some(&alice)),
        ("t8", "todo", Some(&bob)),
        ("t9", "todo", Some(&bob)),
    ] {
        let mut body = json!({ "title": title, "status": status });
        if let Some(a) = assignee {
            body["assigneeId"] = json!(a.id);
        }
        let t = task(&app, &p, &bob, body).await;
        assert_eq!(t["status"], status);
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    let id = |n: usize| ids[n - 1].clone();
    // Another project's task matches every filter but is not in this list.
    task(
        &app,
        &other,
        &alice,
        json!({ "title": "elsewhere", "assigneeId": bob.id }),
    )
    .await;
    // t8 is deleted; t9 is moved to done and reassigned to Alice: the
    // filters see tasks as they are now.
    let (s, b) = app
        .send(
            "DELETE",
            &format!("/api/v1/tasks/{}", id(8)),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app
        .send(
            "PATCH",
            &format!("/api/v1/tasks/{}", id(9)),
            Some(&alice.token),
            Some(json!({ "status": "done", "assigneeId": alice.id })),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    let expect = |ns: &[usize]| -> Vec<String> { ns.iter().map(|&n| id(n)).collect() };
    let everything = expect(&[1, 2, 3, 4, 5, 6, 7, 9]);
    let (bob_id, alice_id) = (bob.id.as_str(), alice.id.as_str());
    let cases: Vec<(String, Vec<String>)> = vec![
        (String::new(), everything.clone()),
        ("status=todo".into(), expect(&[1, 3, 5, 7])),
        ("status=in_progress".into(), expect(&[2])),
        ("status=in_review".into(), expect(&[6])),
        ("status=done".into(), expect(&[4, 9])),
        (format!("assigneeId={bob_id}"), expect(&[1, 2, 5])),
        (format!("assigneeId={alice_id}"), expect(&[4, 6, 7, 9])),
        (format!("assigneeId={}", carol.id), vec![]),
        ("assigneeId=no-such-user".into(), vec![]),
        (format!("status=todo&assigneeId={bob_id}"), expect(&[1, 5])),
        (
            format!("status=done&assigneeId={alice_id}"),
            expect(&[4, 9]),
        ),
        (format!("status=done&assigneeId={bob_id}"), vec![]),
    ];
    for (query, want) in &cases {
        // Any member reads, a viewer too.
        for user in [&alice, &carol] {
            let (got, next) = task_page(&app, &p, user, query).await;
            assert_eq!(&got, want, "?{query}");
            assert_eq!(next, None, "?{query}: one page holds them all");
        }
    }

    // Paging with a small limit walks every matching task once, in the same
    // order, full pages until the last, which ends the walk.
    for (query, want) in &cases {
        for limit in [1usize, 2, 3] {
            let q = format!("{query}&limit={limit}");
            let pages = walk_tasks(&app, &p, &bob, &q, None).await;
            let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
            let mut expected_sizes: Vec<usize> = want.chunks(limit).map(<[String]>::len).collect();
            if expected_sizes.is_empty() {
                expected_sizes.push(0);
            }
            assert_eq!(sizes, expected_sizes, "?{q}: page sizes");
            assert_eq!(&pages.concat(), want, "?{q}: every task once, in order");
        }
    }

    // A task created during a walk is met once, at its end.
    let (first, cursor) = task_page(&app, &p, &bob, "limit=3").await;
    assert_eq!(first, expect(&[1, 2, 3]));
    let cursor = cursor.expect("more pages");
    let late = task(&app, &p, &alice, json!({ "title": "late" })).await;
    let late = late["id"].as_str().unwrap().to_owned();
    let rest = walk_tasks(&app, &p, &bob, "limit=3", Some(cursor)).await;
    let mut want = expect(&[4, 5, 6, 7, 9]);
    want.push(late);
    assert_eq!(rest.concat(), want);
}

#[actix_web::test]
async fn notifications_for_assignment_comment_and_mention() {
    let app = spawn_app(&[]).await;
    let alice = app.register("Alice").await;
    let bob = app.register("Bob").await;
    let ws = workspace(&app, &alice).await;
    add(&app, &ws, &alice, &bob, "member").await;
    let p = project(&app, &ws, &alice).await;
    let mut alice_s = SioClient::connect(app.port, "/", &alice.token).await;
    let mut bob_a = SioClient::connect(app.port, "/", &bob.token).await;
    let mut bob_b = SioClient::connect(app.port, "/", &bob.token).await;

    // Assignment: every device of Bob's; Alice's own action tells her nothing.
    let t = task(
        &app,
        &p,
        &alice,
        json!({ "title": "Review", "assigneeId": bob.id }),
    )
    .await;
    let tid = t["id"].as_str().unwrap().to_owned();
    for c in [&mut bob_a, &mut bob_b] {
        let n = c.expect_event("/", "notification").await;
        assert_eq!(n["type"], "task_assigned");
        assert_eq!(n["unreadCount"], 1);
        assert_eq!(n["link"], format!("/tasks/{tid}"));
        assert!(n["id"].is_string() && n["createdAt"].is_string());
    }
    task(
        &app,
        &p,
        &alice,
        json!({ "title": "Mine", "assigneeId": alice.id }),
    )
    .await;
    alice_s.expect_no_event("/", "notification", QUIET).await;

    // Bob comments on Alice's task: Alice is told.
    let (s, _) = app
        .post(
            &format!("/api/v1/tasks/{tid}/comments"),
            Some(&bob.token),
            json!({ "body": "on it" }),
        )
        .await;
    assert_eq!(s, 201);
    let n = alice_s.expect_event("/", "notification").await;
    assert_eq!(n["type"], "task_comment");

    // Alice mentions Bob.
    let (s, _) = app
        .post(
            &format!("/api/v1/tasks/{tid}/comments"),
            Some(&alice.token),
            json!({ "body": format!("thanks @{} !", bob.username) }),
        )
        .await;
    assert_eq!(s, 201);
    let n = bob_a.expect_event("/", "notification").await;
    assert_eq!(n["type"], "mention");
    assert_eq!(n["unreadCount"], 2);
    alice_s.expect_no_event("/", "notification", QUIET).await;

    let (s, b) = app
        .get("/api/v1/notifications?unread=true", Some(&bob.token))
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["unreadCount"], 2);
    assert_eq!(b["items"][0]["type"], "mention", "newest first");
    let first = b["items"][0]["id"].as_str().unwrap();
    let (s, b) = app
        .post(
            &format!("/api/v1/notifications/{first}/read"),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_eq!((s, b["unreadCount"].as_u64()), (200, Some(1)));
    // Someone else's notification is not found.
    let (s, _) = app
        .post(
            &format!("/api/v1/notifications/{first}/read"),
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, b) = app
        .post(
            "/api/v1/notifications/read-all",
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_eq!((s, b["updated"].as_u64()), (200, Some(1)));
    let (_, b) = app
        .get("/api/v1/notifications?unread=true", Some(&bob.token))
        .await;
    assert_eq!(b["items"], json!([]));
}

#[actix_web::test]
async fn search_ranks_and_tolerates_a_typo() {
    let app = spawn_app(&[]).await;
    let alice = app.register("Alice").await;
    let ws = workspace(&app, &alice).await;
    let p = project(&app, &ws, &alice).await;
    let a = task(
        &app,
        &p,
        &alice,
        json!({ "title": "Payment gateway timeout" }),
    )
    .await;
    let b = task(
        &app,
        &p,
        &alice,
        json!({ "title": "Refactor", "description": "touches payment code", "tags": ["backend"] }),
    )
    .await;
    task(&app, &p, &alice, json!({ "title": "Unrelated" })).await;
    let (s, r) = app
        .get(
            &format!("/api/v1/workspaces/{ws}/search?q=paymnet"),
            Some(&alice.token),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["total"], 2);
    assert_eq!(r["items"][0]["id"], a["id"]);
    assert_eq!(r["items"][1]["id"], b["id"]);
    let (_, r) = app
        .get(
            &format!("/api/v1/workspaces/{ws}/search?q=payment&page=2&limit=1"),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r["total"], 2);
    assert_eq!(r["items"][0]["id"], b["id"]);
    let (_, r) = app
        .get(
            &format!("/api/v1/workspaces/{ws}/search?q=bakcend"),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r["total"], 1);
}

#[actix_web::test]
async fn presence_viewing_and_typing() {
    let app = spawn_app(&[
        ("HUDDLE__COLLAB__OFFLINE_GRACE_MS", "300"),
        ("HUDDLE__CHAT__TYPING_TIMEOUT_MS", "300"),
    ])
    .await;
    let alice = app.register("Alice").await;
    let bob = app.register("Bob").await;
    let ws = workspace(&app, &alice).await;
    add(&app, &ws, &alice, &bob, "viewer").await;
    let p = project(&app, &ws, &alice).await;
    let t = task(&app, &p, &alice, json!({ "title": "Look" })).await;
    let tid = t["id"].as_str().unwrap().to_owned();

    let mut alice_s = SioClient::connect(app.port, "/", &alice.token).await;
    assert_eq!(
        join(&mut alice_s, 1, json!({ "workspaceId": ws, "taskId": tid })).await["ok"],
        true
    );

    // Bob's first connection (any namespace) makes him online once.
    let bob_chat = SioClient::connect(app.port, "/chat", &bob.token).await;
    let e = alice_s.expect_event("/", "presence:user_online").await;
    assert_eq!(e["userId"], bob.id.as_str());
    assert_eq!(e["status"], "online");
    assert!(e["at"].is_string());
    let mut bob_s = SioClient::connect(app.port, "/", &bob.token).await;
    alice_s
        .expect_no_event("/", "presence:user_online", QUIET)
        .await;

    // A viewer may join, view and type.
    let ack = bob_s
        .emit_ack("/", 1, "presence:viewing", json!({ "taskId": tid }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let e = alice_s.expect_event("/", "presence:users_viewing").await;
    assert_eq!(e["taskId"], tid.as_str());
    assert_eq!(e["users"], json!([{ "userId": bob.id, "name": "Bob" }]));

    let ack = bob_s
        .emit_ack("/", 2, "typing:start", json!({ "taskId": tid }))
        .await;
    assert_eq!(ack["ok"], true);
    let e = alice_s.expect_event("/", "typing:user_typing").await;
    assert_eq!(
        (e["userId"].as_str(), e["taskId"].as_str()),
        (Some(bob.id.as_str()), Some(tid.as_str()))
    );
    // Stops by itself; the sender never hears its own typing.
    alice_s.expect_event("/", "typing:user_stopped").await;
    bob_s
        .expect_no_event("/", "typing:user_typing", QUIET)
        .await;

    let ack = bob_s
        .emit_ack("/", 3, "presence:update", json!({ "status": "away" }))
        .await;
    assert_eq!(ack["ok"], true);
    assert_eq!(
        alice_s.expect_event("/", "presence:user_online").await["status"],
        "away"
    );
    let bad = bob_s
        .emit_ack("/", 4, "presence:update", json!({ "status": 7 }))
        .await;
    assert_eq!(bad["error"]["code"], "bad_request");

    // Leaving the task room ends viewing; the last connection closing
    // makes Bob offline.
    let ack = bob_s
        .emit_ack("/", 5, "room:leave", json!({ "taskId": tid }))
        .await;
    assert_eq!(ack["ok"], true);
    assert_eq!(
        alice_s.expect_event("/", "presence:users_viewing").await["users"],
        json!([])
    );
    drop(bob_s);
    alice_s
        .expect_no_event("/", "presence:user_offline", QUIET)
        .await;
    drop(bob_chat);
    let e = alice_s.expect_event("/", "presence:user_offline").await;
    assert_eq!(e["userId"], bob.id.as_str());
    assert_eq!(e["status"], "offline");
}

#[actix_web::test]
async fn chat_mentions_notify_members_of_the_conversation_only() {
    let app = spawn_app(&[]).await;
    let alice = app.register("Alice").await;
    let bob = app.register("Bob").await;
    let carol = app.register("Carol").await;
    let conv = app.conversation(&alice, &[&bob]).await;
    let mut alice_root = SioClient::connect(app.port, "/", &alice.token).await;
    let mut bob_a = SioClient::connect(app.port, "/", &bob.token).await;
    let mut bob_b = SioClient::connect(app.port, "/", &bob.token).await;
    let mut carol_root = SioClient::connect(app.port, "/", &carol.token).await;
    let mut alice_chat = SioClient::connect(app.port, "/chat", &alice.token).await;

    // Bob is a member: told on every device; Carol is not; Alice never
    // about her own mention.
    let text = format!(
        "@{} @{} and me @{}",
        bob.username, carol.username, alice.username
    );
    let ack = alice_chat
        .emit_ack(
            "/chat",
            1,
            "send_message",
            json!({ "conversationId": conv, "text": text, "clientId": "m1" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    for c in [&mut bob_a, &mut bob_b] {
        let n = c.expect_event("/", "notification").await;
        assert_eq!(n["type"], "mention");
        assert_eq!(n["unreadCount"], 1);
        assert_eq!(n["link"], format!("/conversations/{conv}"));
        assert_eq!(n["body"], text.as_str());
    }
    carol_root.expect_no_event("/", "notification", QUIET).await;
    alice_root.expect_no_event("/", "notification", QUIET).await;

    // A retry of the same clientId is not a new message: no new notification.
    let ack = alice_chat
        .emit_ack(
            "/chat",
            2,
            "send_message",
            json!({ "conversationId": conv, "text": text, "clientId": "m1" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    bob_a.expect_no_event("/", "notification", QUIET).await;
    let (s, b) = app
        .get("/api/v1/notifications?unread=true", Some(&bob.token))
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["unreadCount"], 1);
    assert_eq!(b["items"][0]["type"], "mention");
    let (_, b) = app
        .get("/api/v1/notifications?unread=true", Some(&carol.token))
        .await;
    assert_eq!(b["items"], json!([]));
}

#[actix_web::test]
async fn workspace_conversations_are_for_its_members() {
    let app = spawn_app(&[]).await;
    let alice = app.register("Alice").await;
    let bob = app.register("Bob").await;
    let vic = app.register("Vic").await;
    let out = app.register("Out").await;
    let ws = workspace(&app, &alice).await;
    add(&app, &ws, &alice, &bob, "member").await;
    add(&app, &ws, &alice, &vic, "viewer").await;
    let create = |by: &TestUser, ws: &str, members: Vec<&str>| {
        let body = json!({ "workspaceId": ws, "memberIds": members, "title": "team" });
        let token = by.token.clone();
        let app = &app;
        async move { app.post("/api/v1/conversations", Some(&token), body).await }
    };

    // Members of any role may be in it.
    let (s, b) = create(&bob, &ws, vec![&alice.id, &vic.id]).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["workspaceId"], ws.as_str());

    // Someone outside the workspace cannot be added: 403, the same for an
    // unknown id.
    let (s, b) = create(&alice, &ws, vec![&bob.id, &out.id]).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("forbidden")));
    let (s, _) = create(&alice, &ws, vec!["no-such-user"]).await;
    assert_eq!(s, 403);

    // A creator outside the workspace learns nothing: 404 as for an
    // unknown workspace.
    let (s, b) = create(&out, &ws, vec![&alice.id]).await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, _) = create(&alice, "no-such-workspace", vec![&bob.id]).await;
    assert_eq!(s, 404);

    // A member removed from the workspace cannot be put in a new one.
    let (s, _) = app
        .send(
            "DELETE",
            &format!("/api/v1/workspaces/{ws}/members/{}", bob.id),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = create(&alice, &ws, vec![&bob.id]).await;
    assert_eq!(s, 403);
    // Without a workspace, anyone who exists may be added.
    let (s, _) = app
        .post(
            "/api/v1/conversations",
            Some(&alice.token),
            json!({ "memberIds": [out.id], "title": "outside" }),
        )
        .await;
    assert_eq!(s, 201);
}

#[actix_web::test]
async fn a_socket_is_in_at_most_max_rooms_per_socket_rooms() {
    let app = spawn_app(&[("HUDDLE__LIMITS__MAX_ROOMS_PER_SOCKET", "3")]).await;
    let ann = app.register("Ann").await;
    let mut conversations = Vec::new();
    for name in ["Bob", "Cy", "Dee", "Eve"] {
        let other = app.register(name).await;
        conversations.push(app.conversation(&ann, &[&other]).await);
    }
    let mut c = SioClient::connect(app.port, "/chat", &ann.token).await;
    let join = |id: &String| json!({ "conversationId": id });
    for (i, id) in conversations[..3].iter().enumerate() {
        let res = c
            .emit_ack("/chat", i as u64 + 1, "conversation:join", join(id))
            .await;
        assert_eq!(res["ok"], true, "{res}");
    }
    // Joining one it is in already is no new room.
    let res = c
        .emit_ack("/chat", 10, "conversation:join", join(&conversations[0]))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let res = c
        .emit_ack("/chat", 11, "conversation:join", join(&conversations[3]))
        .await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], "conflict", "{res}");
    // Leaving one makes room.
    let res = c
        .emit_ack("/chat", 12, "conversation:leave", join(&conversations[0]))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let res = c
        .emit_ack("/chat", 13, "conversation:join", join(&conversations[3]))
        .await;
    assert_eq!(res["ok"], true, "{res}");
}
