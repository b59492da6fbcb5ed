//! Conformance cases for workspaces, members, projects, tasks, comments,
//! notifications and task search.

use super::created_user;
use huddle_actors::ids::{CommentId, NotificationId, ProjectId, TaskId, UserId, WorkspaceId};
use huddle_actors::model::{
    NewComment, NewNotification, NewProject, NewTask, Priority, Project, Role, Task, TaskFilter,
    TaskPatch, TaskStatus, Workspace,
};
use huddle_actors::store::{DocumentStore, StoreError};

async fn workspace(store: &dyn DocumentStore, owner: &UserId) -> Workspace {
    store
        .create_workspace("Acme".into(), owner.clone())
        .await
        .expect("create_workspace")
}

async fn project(store: &dyn DocumentStore, ws: &Workspace) -> Project {
    store
        .create_project(NewProject {
            workspace_id: ws.id.clone(),
            name: "Launch".into(),
            description: Some("the launch".into()),
            created_by: ws.owner_id.clone(),
        })
        .await
        .expect("create_project")
}

fn new_task(project: &Project, title: &str) -> NewTask {
    NewTask {
        project_id: project.id.clone(),
        title: title.into(),
        description: None,
        status: TaskStatus::Todo,
        priority: Priority::Medium,
        assignee_id: None,
        tags: Vec::new(),
        due_date: None,
        created_by: project.created_by.clone(),
    }
}

async fn task(store: &dyn DocumentStore, project: &Project, title: &str) -> Task {
    store
        .create_task(new_task(project, title))
        .await
        .expect("create_task")
}

/// A workspace starts with its creator as owner; it is listed for members
/// only.
pub async fn case_create_workspace_makes_owner(store: &dyn DocumentStore) {
    let owner = created_user(store, "own").await;
    let other = created_user(store, "oth").await;
    let ws = workspace(store, &owner.id).await;
    assert_eq!(ws.owner_id, owner.id);
    assert_eq!(store.workspace(&ws.id).await.unwrap(), Some(ws.clone()));
    let m = store.member(&ws.id, &owner.id).await.unwrap().unwrap();
    assert_eq!(m.role, Role::Owner);
    assert!(store.member(&ws.id, &other.id).await.unwrap().is_none());
    let page = store
        .workspaces_for_user(&owner.id, None, 10)
        .await
        .unwrap();
    assert_eq!(page.items, vec![ws]);
    assert!(store
        .workspaces_for_user(&other.id, None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store
        .workspace(&WorkspaceId::from("nope"))
        .await
        .unwrap()
        .is_none());
}

/// Workspaces of a user page with a cursor and no repeats.
pub async fn case_workspaces_for_user_pages(store: &dyn DocumentStore) {
    let owner = created_user(store, "pg").await;
    for _ in 0..5 {
        workspace(store, &owner.id).await;
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .workspaces_for_user(&owner.id, cursor.as_deref(), 2)
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|w| w.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(seen.len(), 5);
    assert_eq!(dedup.len(), 5);
}

/// Adding a member twice conflicts; unknown workspace is `NotFound`; the
/// member list shows everyone.
pub async fn case_add_member_and_list(store: &dyn DocumentStore) {
    let owner = created_user(store, "am").await;
    let bob = created_user(store, "bob").await;
    let ws = workspace(store, &owner.id).await;
    let m = store
        .add_member(&ws.id, &bob.id, Role::Viewer)
        .await
        .unwrap();
    assert_eq!(m.role, Role::Viewer);
    assert!(matches!(
        store.add_member(&ws.id, &bob.id, Role::Member).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .add_member(&WorkspaceId::from("missing"), &bob.id, Role::Member)
            .await,
        Err(StoreError::NotFound(_))
    ));
    let page = store.members(&ws.id, None, 1).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let rest = store
        .members(&ws.id, page.next_cursor.as_deref(), 10)
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next_cursor.is_none());
    assert_eq!(
        store
            .workspaces_for_user(&bob.id, None, 10)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

/// Roles change, except the owner's; nobody becomes a second owner.
pub async fn case_member_roles_and_owner_rules(store: &dyn DocumentStore) {
    let owner = created_user(store, "mr").await;
    let bob = created_user(store, "bob").await;
    let ws = workspace(store, &owner.id).await;
    store
        .add_member(&ws.id, &bob.id, Role::Member)
        .await
        .unwrap();
    let (before, after) = store
        .set_member_role(&ws.id, &bob.id, Role::Admin)
        .await
        .unwrap();
    assert_eq!((before.role, after.role), (Role::Member, Role::Admin));
    assert!(matches!(
        store.set_member_role(&ws.id, &owner.id, Role::Viewer).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.set_member_role(&ws.id, &bob.id, Role::Owner).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.remove_member(&ws.id, &owner.id).await,
        Err(StoreError::Conflict(_))
    ));
    let stranger = created_user(store, "str").await;
    assert!(matches!(
        store
            .set_member_role(&ws.id, &stranger.id, Role::Admin)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// A removed member is gone from the member record and from their list.
pub async fn case_remove_member(store: &dyn DocumentStore) {
    let owner = created_user(store, "rm").await;
    let bob = created_user(store, "bob").await;
    let ws = workspace(store, &owner.id).await;
    store
        .add_member(&ws.id, &bob.id, Role::Member)
        .await
        .unwrap();
    let removed = store.remove_member(&ws.id, &bob.id).await.unwrap();
    assert_eq!(removed.user_id, bob.id);
    assert!(store.member(&ws.id, &bob.id).await.unwrap().is_none());
    assert!(store
        .workspaces_for_user(&bob.id, None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(matches!(
        store.remove_member(&ws.id, &bob.id).await,
        Err(StoreError::NotFound(_))
    ));
    // Re-adding works after removal.
    store
        .add_member(&ws.id, &bob.id, Role::Viewer)
        .await
        .unwrap();
}

/// Projects belong to an existing workspace and list oldest first.
pub async fn case_projects(store: &dyn DocumentStore) {
    let owner = created_user(store, "pj").await;
    let ws = workspace(store, &owner.id).await;
    let a = project(store, &ws).await;
    let b = project(store, &ws).await;
    assert_eq!(store.project(&a.id).await.unwrap(), Some(a.clone()));
    assert!(store
        .project(&ProjectId::from("nope"))
        .await
        .unwrap()
        .is_none());
    let page = store.projects(&ws.id, None, 1).await.unwrap();
    assert_eq!(page.items, vec![a]);
    let page = store
        .projects(&ws.id, page.next_cursor.as_deref(), 5)
        .await
        .unwrap();
    assert_eq!(page.items, vec![b]);
    assert!(page.next_cursor.is_none());
    assert!(matches!(
        store
            .create_project(NewProject {
                workspace_id: WorkspaceId::from("missing"),
                name: "x".into(),
                description: None,
                created_by: owner.id.clone(),
            })
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// A task takes its workspace from the project; unknown project is
/// `NotFound`.
pub async fn case_create_and_read_task(store: &dyn DocumentStore) {
    let owner = created_user(store, "tk").await;
    let ws = workspace(store, &owner.id).await;
    let p = project(store, &ws).await;
    let mut new = new_task(&p, "Write docs");
    new.tags = vec!["docs".into()];
    new.assignee_id = Some(owner.id.clone());
    let t = store.create_task(new).await.unwrap();
    assert_eq!(t.workspace_id, ws.id);
    assert_eq!(t.project_id, p.id);
    assert_eq!(t.tags, vec!["docs".to_owned()]);
    assert!(t.deleted_at.is_none());
    assert_eq!(store.task(&t.id).await.unwrap(), Some(t.clone()));
    assert!(store.task(&TaskId::from("nope")).await.unwrap().is_none());
    let mut orphan = new_task(&p, "x");
    orphan.project_id = ProjectId::from("missing");
    assert!(matches!(
        store.create_task(orphan).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A patch changes only what it names and can clear nullable fields; the
/// before and after states come back.
pub async fn case_update_task_patch(store: &dyn DocumentStore) {
    let owner = created_user(store, "up").await;
    let ws = workspace(store, &owner.id).await;
    let p = project(store, &ws).await;
    let mut new = new_task(&p, "Old");
    new.description = Some("desc".into());
    let t = store.create_task(new).await.unwrap();
    let (before, after) = store
        .update_task(
            &t.id,
            TaskPatch {
                title: Some("New".into()),
                status: Some(TaskStatus::Done),
                description: Some(None),
                assignee_id: Some(Some(owner.id.clone())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(before.title, "Old");
    assert_eq!(after.title, "New");
    assert_eq!(after.status, TaskStatus::Done);
    assert_eq!(after.description, None);
    assert_eq!(after.assignee_id, Some(owner.id.clone()));
    assert_eq!(after.priority, Priority::Medium);
    assert!(after.updated_at >= before.updated_at);
    assert_eq!(store.task(&t.id).await.unwrap(), Some(after));
    assert!(matches!(
        store
            .update_task(&TaskId::from("nope"), TaskPatch::default())
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// Deleting is soft: the record stays with `deleted_at`, leaves lists, and
/// cannot be updated or deleted again.
pub async fn case_delete_task_is_soft(store: &dyn DocumentStore) {
    let owner = created_user(store, "del").await;
    let ws = workspace(store, &owner.id).await;
    let p = project(store, &ws).await;
    let t = task(store, &p, "Doomed").await;
    let deleted = store.delete_task(&t.id).await.unwrap();
    assert!(deleted.deleted_at.is_some());
    assert!(store
        .task(&t.id)
        .await
        .unwrap()
        .unwrap()
        .deleted_at
        .is_some());
    let page = store
        .tasks(&p.id, &TaskFilter::default(), None, 10)
        .await
        .unwrap();
    assert!(page.items.is_empty());
    assert!(matches!(
        store.delete_task(&t.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.update_task(&t.id, TaskPatch::default()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .create_comment(NewComment {
                task_id: t.id.clone(),
                author_id: owner.id.clone(),
                body: "late".into(),
            })
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// Task lists filter by status and assignee (also after changes), and page
/// oldest first.
pub async fn case_task_filters_and_pages(store: &dyn DocumentStore) {
    let owner = created_user(store, "flt").await;
    let bob = created_user(store, "bob").await;
    let ws = workspace(store, &owner.id).await;
    let p = project(store, &ws).await;
    let other = project(store, &ws).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut new = new_task(&p, &format!("t{i}"));
        if i % 2 == 0 {
            new.assignee_id = Some(bob.id.clone());
        }
        ids.push(store.create_task(new).await.unwrap().id);
    }
    task(store, &other, "elsewhere").await;
    store
        .update_task(
            &ids[1],
            TaskPatch {
                status: Some(TaskStatus::InProgress),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .update_task(
            &ids[0],
            TaskPatch {
                assignee_id: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let all = store
        .tasks(&p.id, &TaskFilter::default(), None, 2)
        .await
        .unwrap();
    assert_eq!(
        all.items.iter().map(|t| &t.id).collect::<Vec<_>>(),
        vec![&ids[0], &ids[1]]
    );
    let mut got: Vec<TaskId> = all.items.into_iter().map(|t| t.id).collect();
    let mut cursor = all.next_cursor;
    while let Some(c) = cursor {
        let page = store
            .tasks(&p.id, &TaskFilter::default(), Some(&c), 2)
            .await
            .unwrap();
        got.extend(page.items.into_iter().map(|t| t.id));
        cursor = page.next_cursor;
    }
    assert_eq!(got, ids);

    let todo = TaskFilter {
        status: Some(TaskStatus::Todo),
        assignee_id: None,
    };
    let page = store.tasks(&p.id, &todo, None, 10).await.unwrap();
    assert_eq!(page.items.len(), 4);
    let in_progress = TaskFilter {
        status: Some(TaskStatus::InProgress),
        assignee_id: None,
    };
    let page = store.tasks(&p.id, &in_progress, None, 10).await.unwrap();
    assert_eq!(
        page.items.iter().map(|t| &t.id).collect::<Vec<_>>(),
        vec![&ids[1]]
    );
    let bobs = TaskFilter {
        status: None,
        assignee_id: Some(bob.id.clone()),
    };
    let page = store.tasks(&p.id, &bobs, None, 10).await.unwrap();
    assert_eq!(
        page.items.iter().map(|t| &t.id).collect::<Vec<_>>(),
        vec![&ids[2], &ids[4]]
    );
    let page = store.tasks(&p.id, &bobs, None, 1).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let page = store
        .tasks(&p.id, &bobs, page.next_cursor.as_deref(), 1)
        .await
        .unwrap();
    assert_eq!(page.items[0].id, ids[4]);
    let both = TaskFilter {
        status: Some(TaskStatus::Todo),
        assignee_id: Some(bob.id.clone()),
    };
    assert_eq!(
        store
            .tasks(&p.id, &both, None, 10)
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

/// Comments: created on live tasks, listed oldest first, edited and deleted.
pub async fn case_comments(store: &dyn DocumentStore) {
    let owner = created_user(store, "cm").await;
    let ws = workspace(store, &owner.id).await;
    let p = project(store, &ws).await;
    let t = task(store, &p, "Discuss").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let c = store
            .create_comment(NewComment {
                task_id: t.id.clone(),
                author_id: owner.id.clone(),
                body: format!("c{i}"),
            })
            .await
            .unwrap();
        assert_eq!((&c.workspace_id, &c.project_id), (&ws.id, &p.id));
        ids.push(c.id);
    }
    let page = store.comments(&t.id, None, 2).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[0].body, "c0");
    let rest = store
        .comments(&t.id, page.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next_cursor.is_none());
    let edited = store
        .update_comment(&ids[1], "edited".into())
        .await
        .unwrap();
    assert_eq!(edited.body, "edited");
    assert!(edited.updated_at.is_some());
    assert_eq!(store.comment(&ids[1]).await.unwrap(), Some(edited));
    store.delete_comment(&ids[0]).await.unwrap();
    assert!(store.comment(&ids[0]).await.unwrap().is_none());
    assert_eq!(
        store.comments(&t.id, None, 10).await.unwrap().items.len(),
        2
    );
    assert!(matches!(
        store.delete_comment(&ids[0]).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .update_comment(&CommentId::from("nope"), "x".into())
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// A mention notification for `user` titled `title`.
fn mention(user: &UserId, title: String) -> NewNotification {
    NewNotification {
        user_id: user.clone(),
        kind: "mention".into(),
        title,
        body: "hello".into(),
        link: "/tasks/1".into(),
    }
}

/// Notifications: unread count follows creation, read and read-all; lists
/// are newest first and per user.
pub async fn case_notifications(store: &dyn DocumentStore) {
    let alice = created_user(store, "na").await;
    let bob = created_user(store, "nb").await;
    let mut ids = Vec::new();
    for i in 1..=3u64 {
        let (n, unread) = store
            .create_notification(mention(&alice.id, format!("n{i}")), 0)
            .await
            .unwrap();
        assert!(!n.read);
        assert_eq!(unread, i);
        ids.push(n.id);
    }
    assert_eq!(store.unread_count(&alice.id).await.unwrap(), 3);
    assert_eq!(store.unread_count(&bob.id).await.unwrap(), 0);
    let page = store
        .notifications(&alice.id, false, None, 2)
        .await
        .unwrap();
    assert_eq!(page.items[0].title, "n3");
    let rest = store
        .notifications(&alice.id, false, page.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].title, "n1");
    assert!(matches!(
        store.mark_notification_read(&bob.id, &ids[0]).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .mark_notification_read(&alice.id, &NotificationId::from("nope"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store
            .mark_notification_read(&alice.id, &ids[0])
            .await
            .unwrap(),
        2
    );
    // Marking again changes nothing.
    assert_eq!(
        store
            .mark_notification_read(&alice.id, &ids[0])
            .await
            .unwrap(),
        2
    );
    let unread = store
        .notifications(&alice.id, true, None, 10)
        .await
        .unwrap();
    assert_eq!(unread.items.len(), 2);
    assert!(unread.items.iter().all(|n| !n.read));
    assert_eq!(
        store.mark_all_notifications_read(&alice.id).await.unwrap(),
        2
    );
    assert_none_unread(store, &alice.id).await;
    assert!(store
        .notifications(&alice.id, false, None, 10)
        .await
        .unwrap()
        .items
        .iter()
        .all(|n| n.read));
}

/// The user has no unread notification, by count and by list.
async fn assert_none_unread(store: &dyn DocumentStore, user: &UserId) {
    assert_eq!(store.unread_count(user).await.unwrap(), 0);
    assert!(store
        .notifications(user, true, None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
}

/// "Mark all read" marks every unread notification of the user however many
/// there are (a store may do it in several writes: the embedded one in
/// writes of 500), and no one else's.
pub async fn case_mark_all_read_marks_many(store: &dyn DocumentStore) {
    let alice = created_user(store, "ma").await;
    let bob = created_user(store, "mb").await;
    let note = |user: &UserId, i: usize| mention(user, format!("m{i}"));
    let many = 601;
    for i in 0..many {
        store
            .create_notification(note(&alice.id, i), 0)
            .await
            .unwrap();
    }
    store
        .create_notification(note(&bob.id, 0), 0)
        .await
        .unwrap();
    assert_eq!(store.unread_count(&alice.id).await.unwrap(), many as u64);
    assert_eq!(
        store.mark_all_notifications_read(&alice.id).await.unwrap(),
        many as u64
    );
    assert_none_unread(store, &alice.id).await;
    assert_eq!(store.unread_count(&bob.id).await.unwrap(), 1);
    assert_eq!(
        store.mark_all_notifications_read(&alice.id).await.unwrap(),
        0
    );
}

/// Creating a notification past the number kept deletes the user's oldest,
/// read or not, and the unread count follows; other users keep theirs.
pub async fn case_notifications_beyond_kept_go(store: &dyn DocumentStore) {
    let alice = created_user(store, "ka").await;
    let bob = created_user(store, "kb").await;
    // Creates notification `k{i}` for `user` keeping `keep`: its id and the
    // unread count.
    let create = |user: &UserId, i: usize, keep: usize| {
        let new = mention(user, format!("k{i}"));
        async move {
            let (n, unread) = store.create_notification(new, keep).await.unwrap();
            (n.id, unread)
        }
    };
    let titles = |user: &UserId, unread_only: bool| {
        let user = user.clone();
        async move {
            let page = store
                .notifications(&user, unread_only, None, 10)
                .await
                .unwrap();
            page.items.into_iter().map(|n| n.title).collect::<Vec<_>>()
        }
    };
    let mut ids = Vec::new();
    for i in 1..=3 {
        let (id, unread) = create(&alice.id, i, 3).await;
        assert_eq!(unread, i as u64);
        ids.push(id);
    }
    store
        .mark_notification_read(&alice.id, &ids[0])
        .await
        .unwrap();
    // k1 (read) goes: three unread remain; then k2 (unread) goes: still three.
    assert_eq!(create(&alice.id, 4, 3).await.1, 3);
    assert_eq!(create(&alice.id, 5, 3).await.1, 3);
    assert_eq!(store.unread_count(&alice.id).await.unwrap(), 3);
    assert_eq!(titles(&alice.id, false).await, ["k5", "k4", "k3"]);
    assert_eq!(titles(&alice.id, true).await, ["k5", "k4", "k3"]);
    assert!(matches!(
        store.mark_notification_read(&alice.id, &ids[1]).await,
        Err(StoreError::NotFound(_))
    ));

    // Kept without a limit, then one with a limit of 2: the four oldest go
    // at once.
    for i in 1..=5 {
        create(&bob.id, i, 0).await;
    }
    assert_eq!(create(&bob.id, 6, 2).await.1, 2);
    assert_eq!(titles(&bob.id, false).await, ["k6", "k5"]);
    assert_eq!(store.unread_count(&alice.id).await.unwrap(), 3);
    assert_eq!(store.mark_all_notifications_read(&bob.id).await.unwrap(), 2);
}

/// Search ranks by relevance within one workspace, tolerates one typo in a
/// word of 4+ letters, follows updates and deletes at once.
pub async fn case_search_tasks(store: &dyn DocumentStore) {
    let owner = created_user(store, "se").await;
    let ws = workspace(store, &owner.id).await;
    let other_ws = workspace(store, &owner.id).await;
    let p = project(store, &ws).await;
    let q = project(store, &other_ws).await;
    let mut new = new_task(&p, "Deploy the payment service");
    new.tags = vec!["backend".into()];
    let deploy = store.create_task(new).await.unwrap();
    let mut new = new_task(&p, "Write release notes");
    new.description = Some("mention the payment changes".into());
    let notes = store.create_task(new).await.unwrap();
    task(store, &p, "Unrelated chore").await;
    task(store, &q, "Payment in another workspace").await;

    let hits = store.search_tasks(&ws.id, "payment", 0, 10).await.unwrap();
    assert_eq!(hits.total, 2);
    assert_eq!(hits.items[0].id, deploy.id, "title match ranks first");
    assert_eq!(hits.items[1].id, notes.id);
    // One typo: substitution, transposition, deletion, insertion.
    for typo in ["paymant", "paymnet", "paymet", "paymennt"] {
        let hits = store.search_tasks(&ws.id, typo, 0, 10).await.unwrap();
        assert_eq!(hits.total, 2, "typo {typo}");
    }
    // Tags are searched; short words need an exact match.
    let hits = store.search_tasks(&ws.id, "backend", 0, 10).await.unwrap();
    assert_eq!(hits.items.len(), 1);
    assert!(store
        .search_tasks(&ws.id, "zzzzzz", 0, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    // Paging.
    let page = store.search_tasks(&ws.id, "payment", 1, 1).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id, notes.id);
    // Updates and deletes are reflected.
    store
        .update_task(
            &notes.id,
            TaskPatch {
                title: Some("Kubernetes upgrade".into()),
                description: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let hits = store
        .search_tasks(&ws.id, "kubernetes", 0, 10)
        .await
        .unwrap();
    assert_eq!(hits.items.len(), 1);
    store.delete_task(&deploy.id).await.unwrap();
    let hits = store.search_tasks(&ws.id, "payment", 0, 10).await.unwrap();
    assert_eq!(hits.total, 0);
}

/// Ids of the hits of `query` in `workspace` (first page of 50).
async fn hit_ids(store: &dyn DocumentStore, workspace: &WorkspaceId, query: &str) -> Vec<TaskId> {
    store
        .search_tasks(workspace, query, 0, 50)
        .await
        .unwrap_or_else(|e| panic!("search {query:?}: {e:?}"))
        .items
        .into_iter()
        .map(|t| t.id)
        .collect()
}

/// A word of 4+ letters tolerates one typo; a shorter one matches exactly.
/// Several query words find a task matching any of them, best match first.
pub async fn case_search_short_words_are_exact(store: &dyn DocumentStore) {
    let owner = created_user(store, "sw").await;
    let ws = workspace(store, &owner.id).await;
    let p = project(store, &ws).await;
    let bug = task(store, &p, "Fix the bug in sync").await;
    let big = task(store, &p, "A big refactor").await;

    assert_eq!(hit_ids(store, &ws.id, "bug").await, vec![bug.id.clone()]);
    assert_eq!(hit_ids(store, &ws.id, "BUG").await, vec![bug.id.clone()]);
    assert!(
        hit_ids(store, &ws.id, "bog").await.is_empty(),
        "a 3-letter word matches exactly only"
    );
    assert_eq!(hit_ids(store, &ws.id, "big").await, vec![big.id.clone()]);
    // 4 letters: one typo of each kind.
    for typo in ["synk", "snyc", "syn", "synci"] {
        let expected = if typo.chars().count() >= 4 {
            vec![bug.id.clone()]
        } else {
            Vec::new()
        };
        assert_eq!(hit_ids(store, &ws.id, typo).await, expected, "query {typo}");
    }
    // Two typos are too many.
    assert!(hit_ids(store, &ws.id, "refaktr").await.is_empty());
    // Any word may match; matching more words ranks higher.
    let hits = hit_ids(store, &ws.id, "big refactor bug").await;
    assert_eq!(hits, vec![big.id.clone(), bug.id.clone()]);
}

/// Pages cover the hits once each, in rank order, with the same total.
pub async fn case_search_pages(store: &dyn DocumentStore) {
    let owner = created_user(store, "sp").await;
    let ws = workspace(store, &owner.id).await;
    let p = project(store, &ws).await;
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(task(store, &p, &format!("invoice number {i}")).await.id);
    }
    task(store, &p, "something else").await;
    let all = store.search_tasks(&ws.id, "invoice", 0, 50).await.unwrap();
    assert_eq!(all.total, 7);
    let mut seen = Vec::new();
    for page in 0..4 {
        let hits = store
            .search_tasks(&ws.id, "invoice", page * 2, 2)
            .await
            .unwrap();
        assert_eq!(hits.total, 7, "page {page}");
        assert_eq!(hits.items.len(), if page < 3 { 2 } else { 1 });
        seen.extend(hits.items.into_iter().map(|t| t.id));
    }
    assert_eq!(
        seen,
        all.items.iter().map(|t| t.id.clone()).collect::<Vec<_>>()
    );
    made.sort();
    seen.sort();
    assert_eq!(seen, made);
    let past = store.search_tasks(&ws.id, "invoice", 10, 2).await.unwrap();
    assert!(past.items.is_empty());
    assert_eq!(past.total, 7);
    assert!(store
        .search_tasks(&ws.id, "   ", 0, 10)
        .await
        .unwrap()
        .items
        .is_empty());
}

/// What one store handle writes, another handle on the same database finds
/// at once: the two-node case (each MongoDB node keeps its own index). The
/// reader searches first, so its index is loaded before the writes, and
/// every kind of task write is followed: create, edit, tags, status move,
/// attachment, delete. Backends that allow one handle per database pass
/// the same handle twice.
pub async fn case_search_sees_writes_of_another_handle(
    writer: &dyn DocumentStore,
    reader: &dyn DocumentStore,
) {
    let owner = created_user(writer, "x").await;
    let ws = workspace(writer, &owner.id).await;
    let p = project(writer, &ws).await;
    let early = task(writer, &p, "Quarterly roadmap").await;
    assert_eq!(
        hit_ids(reader, &ws.id, "roadmap").await,
        vec![early.id.clone()]
    );
    assert!(hit_ids(reader, &ws.id, "migration").await.is_empty());

    let t = task(writer, &p, "Database migration").await;
    assert_eq!(
        hit_ids(reader, &ws.id, "migraton").await,
        vec![t.id.clone()]
    );

    writer
        .update_task(
            &t.id,
            TaskPatch {
                title: Some("Schema rollout".into()),
                description: Some(Some("needs a maintenance window".into())),
                tags: Some(vec!["postgres".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(hit_ids(reader, &ws.id, "migration").await.is_empty());
    for query in ["rollout", "maintenance", "postgres"] {
        assert_eq!(
            hit_ids(reader, &ws.id, query).await,
            vec![t.id.clone()],
            "{query}"
        );
    }

    // A status move and an attachment keep the task found, with its new state.
    writer
        .update_task(
            &t.id,
            TaskPatch {
                status: Some(TaskStatus::Done),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let file = stored_file(&owner.id);
    writer.create_file(file.clone()).await.unwrap();
    writer
        .attach_file(&t.id, &file.id, serde_json::json!({ "id": file.id }), 5)
        .await
        .unwrap();
    let hits = reader.search_tasks(&ws.id, "rollout", 0, 10).await.unwrap();
    assert_eq!(hits.total, 1);
    assert_eq!(hits.items[0].status, TaskStatus::Done);
    assert_eq!(hits.items[0].attachments.len(), 1);

    writer.delete_task(&t.id).await.unwrap();
    let hits = reader.search_tasks(&ws.id, "rollout", 0, 10).await.unwrap();
    assert_eq!((hits.total, hits.items.len()), (0, 0));
    assert_eq!(
        hit_ids(reader, &ws.id, "roadmap").await,
        vec![early.id.clone()]
    );

    // And the other way round.
    let back = task(reader, &p, "Roadmap review").await;
    let hits = hit_ids(writer, &ws.id, "roadmap").await;
    assert_eq!(hits.len(), 2);
    assert!(hits.contains(&back.id) && hits.contains(&early.id));
}

fn stored_file(owner: &UserId) -> huddle_actors::model::FileRecord {
    let id = huddle_actors::ids::new_id();
    huddle_actors::model::FileRecord {
        id: id.clone(),
        file_name: "plan.pdf".into(),
        size: 10,
        mime_type: "application/pdf".into(),
        sha256: "cd".repeat(32),
        blob_key: id,
        uploaded_by: owner.clone(),
        created_at: chrono::Utc::now(),
    }
}

/// Attaching a file: listed on the task, once per file, at most `max`, and
/// readable by the workspace's members (not by others, nor once the task is
/// deleted).
pub async fn case_attach_file_to_task(store: &dyn DocumentStore) {
    let owner = created_user(store, "att").await;
    let member = created_user(store, "att").await;
    let outsider = created_user(store, "att").await;
    let ws = workspace(store, &owner.id).await;
    store
        .add_member(&ws.id, &member.id, Role::Viewer)
        .await
        .unwrap();
    let p = project(store, &ws).await;
    let t = task(store, &p, "with files").await;
    let file = stored_file(&owner.id);
    store.create_file(file.clone()).await.unwrap();
    assert!(!store.can_read_file(&file.id, &member.id).await.unwrap());

    let object = serde_json::json!({ "id": file.id, "fileName": file.file_name });
    let (after, changed) = store
        .attach_file(&t.id, &file.id, object.clone(), 2)
        .await
        .unwrap();
    assert!(changed);
    assert_eq!(after.attachments, vec![object.clone()]);
    assert!(after.updated_at >= t.updated_at);
    assert_eq!(store.task(&t.id).await.unwrap().unwrap(), after);
    let (again, changed) = store
        .attach_file(&t.id, &file.id, object.clone(), 2)
        .await
        .unwrap();
    assert!(!changed, "a file is attached once");
    assert_eq!(again, after);

    assert!(store.can_read_file(&file.id, &member.id).await.unwrap());
    assert!(store.can_read_file(&file.id, &owner.id).await.unwrap());
    assert!(!store.can_read_file(&file.id, &outsider.id).await.unwrap());

    let second = stored_file(&owner.id);
    store.create_file(second.clone()).await.unwrap();
    let second_object = serde_json::json!({ "id": second.id });
    store
        .attach_file(&t.id, &second.id, second_object, 2)
        .await
        .unwrap();
    let third = stored_file(&owner.id);
    store.create_file(third.clone()).await.unwrap();
    assert!(matches!(
        store
            .attach_file(&t.id, &third.id, serde_json::json!({ "id": third.id }), 2)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.task(&t.id).await.unwrap().unwrap().attachments.len(),
        2
    );
    assert!(matches!(
        store
            .attach_file(&t.id, "no-such-file", serde_json::json!({ "id": "x" }), 10)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .attach_file(
                &TaskId::from("no-such-task"),
                &third.id,
                serde_json::json!({ "id": third.id }),
                10
            )
            .await,
        Err(StoreError::NotFound(_))
    ));

    // A removed member loses access; a deleted task grants nothing.
    store.remove_member(&ws.id, &member.id).await.unwrap();
    assert!(!store.can_read_file(&second.id, &member.id).await.unwrap());
    let other = created_user(store, "att").await;
    store
        .add_member(&ws.id, &other.id, Role::Member)
        .await
        .unwrap();
    assert!(store.can_read_file(&second.id, &other.id).await.unwrap());
    store.delete_task(&t.id).await.unwrap();
    assert!(!store.can_read_file(&second.id, &other.id).await.unwrap());
    assert!(matches!(
        store
            .attach_file(&t.id, &third.id, serde_json::json!({ "id": third.id }), 10)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// Concurrent attachments never exceed the maximum.
pub async fn case_concurrent_attachments_respect_max(store: &dyn DocumentStore) {
    let owner = created_user(store, "catt").await;
    let ws = workspace(store, &owner.id).await;
    let p = project(store, &ws).await;
    let t = task(store, &p, "busy").await;
    let mut files = Vec::new();
    for _ in 0..8 {
        let f = stored_file(&owner.id);
        store.create_file(f.clone()).await.unwrap();
        files.push(f);
    }
    let results = futures_util::future::join_all(
        files
            .iter()
            .map(|f| store.attach_file(&t.id, &f.id, serde_json::json!({ "id": f.id }), 5)),
    )
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 5);
    assert!(results
        .iter()
        .filter(|r| r.is_err())
        .all(|r| matches!(r, Err(StoreError::Conflict(_)))));
    assert_eq!(
        store.task(&t.id).await.unwrap().unwrap().attachments.len(),
        5
    );
}
