//! Discovery's view of the directory (shared/src/graph/directory.rs) against the sandbox: every
//! user across pages of 999, groups by name or id, a group's users through nested groups, and
//! errors that say what to do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use graph_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_TENANT, Group, Mailbox, Sandbox, World,
};
use mailroom::credentials::{AppCredential, ClientAuth};
use mailroom::graph::{DirectoryClient, GraphClient, GraphConfig, GraphError};

const SALES: &str = "11111111-0000-0000-0000-000000000001";
const EMEA: &str = "11111111-0000-0000-0000-000000000002";
const USERS: usize = 1_100;

async fn sandbox() -> Sandbox {
    let mut world = World::default_test();
    for i in 0..USERS {
        world = world.mailbox(
            DEFAULT_TENANT,
            Mailbox::new(&format!("user{i:04}@contoso.com")),
        );
    }
    let world = world
        .mailbox(DEFAULT_TENANT, Mailbox::new("info@contoso.com").shared())
        .group(
            DEFAULT_TENANT,
            Group::new(SALES, "Sales")
                .member("user0001@contoso.com")
                .member("info@contoso.com")
                .nested(EMEA),
        )
        .group(
            DEFAULT_TENANT,
            Group::new(EMEA, "Sales EMEA (O'Brien's team)")
                .member("user0002@contoso.com")
                .member("user0001@contoso.com"),
        );
    let sandbox = Sandbox::start(world).await.unwrap();
    sandbox.set_app_permissions(
        DEFAULT_CLIENT_ID,
        &["Mail.Read", "User.Read.All", "GroupMember.Read.All"],
    );
    sandbox
}

fn directory(sandbox: &Sandbox) -> DirectoryClient {
    let url = url::Url::parse(&sandbox.url()).unwrap();
    let graph = GraphClient::new(GraphConfig::new(url.clone(), url)).unwrap();
    graph.directory(AppCredential::new(
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        ClientAuth::Secret(DEFAULT_SECRET.to_owned().into()),
    ))
}

#[tokio::test]
async fn every_user_is_listed_across_pages_with_shared_mailboxes_marked() {
    let sandbox = sandbox().await;
    let users = directory(&sandbox).users().await.unwrap();
    assert_eq!(users.len(), USERS + 1);
    let pages = sandbox
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/v1.0/users"))
        .count();
    assert_eq!(pages, 2, "999 to a page");
    let info = users
        .iter()
        .find(|u| u.mail.as_deref() == Some("info@contoso.com"))
        .unwrap();
    assert_eq!(info.account_enabled, Some(false));
    assert!(
        users
            .iter()
            .filter(|u| u.mail.as_deref() != Some("info@contoso.com"))
            .all(|u| u.account_enabled == Some(true))
    );
}

#[tokio::test]
async fn a_group_by_name_or_id_and_its_users_through_nested_groups() {
    let sandbox = sandbox().await;
    let directory = directory(&sandbox);
    assert_eq!(directory.group("sales").await.unwrap().id, SALES);
    // A quote in the name is escaped in the filter.
    assert_eq!(
        directory
            .group("Sales EMEA (O'Brien's team)")
            .await
            .unwrap()
            .id,
        EMEA
    );
    assert_eq!(
        directory
            .group(SALES)
            .await
            .unwrap()
            .display_name
            .as_deref(),
        Some("Sales")
    );
    let mut members: Vec<String> = directory
        .group_users(SALES)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|u| u.mail)
        .collect();
    members.sort();
    assert_eq!(
        members,
        [
            "info@contoso.com",
            "user0001@contoso.com",
            "user0002@contoso.com"
        ]
    );
}

#[tokio::test]
async fn an_unknown_group_and_a_missing_permission_say_what_to_do() {
    let sandbox = sandbox().await;
    let directory = directory(&sandbox);
    for name in ["Marketing", "99999999-0000-0000-0000-000000000000"] {
        let error = directory.group(name).await.unwrap_err();
        assert!(
            matches!(error, GraphError::GroupNotFound { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(name), "{error}");
    }
    let error = directory
        .group_users("99999999-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert!(
        matches!(error, GraphError::GroupNotFound { .. }),
        "{error:?}"
    );

    sandbox.set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.Read"]);
    let error = directory.users().await.unwrap_err().to_string();
    assert!(error.contains("User.Read.All"), "{error}");
    assert!(error.contains("admin consent"), "{error}");
    let error = directory.group("Sales").await.unwrap_err().to_string();
    assert!(error.contains("GroupMember.Read.All"), "{error}");
}
