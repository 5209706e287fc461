//! The directory (src/graph/directory.rs): `/users` with Graph's paging and `$select`, groups by
//! name, transitive members through nested groups, shared and unlicensed mailboxes, and the
//! permissions each needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Graph, code};
use graph_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_TENANT, Group, Mailbox, Sandbox, World};
use serde_json::Value;

const SALES: &str = "11111111-0000-0000-0000-000000000001";
const EMEA: &str = "11111111-0000-0000-0000-000000000002";

/// 250 users, one shared mailbox, one unlicensed user; a group "Sales" whose members are two
/// users and the nested group "Sales EMEA" (one more user, and one already in Sales).
async fn directory() -> Sandbox {
    let mut world = World::default_test();
    for i in 0..250 {
        world = world.mailbox(
            DEFAULT_TENANT,
            Mailbox::new(&format!("user{i:03}@contoso.com")),
        );
    }
    let world = world
        .mailbox(DEFAULT_TENANT, Mailbox::new("info@contoso.com").shared())
        .mailbox(
            DEFAULT_TENANT,
            Mailbox::new("intern@contoso.com").unlicensed(),
        )
        .group(
            DEFAULT_TENANT,
            Group::new(SALES, "Sales")
                .member("user001@contoso.com")
                .member("user002@contoso.com")
                .nested(EMEA),
        )
        .group(
            DEFAULT_TENANT,
            Group::new(EMEA, "Sales EMEA")
                .member("user003@contoso.com")
                .member("user001@contoso.com")
                .nested(SALES),
        );
    let sandbox = Sandbox::start(world).await.unwrap();
    sandbox.set_app_permissions(
        DEFAULT_CLIENT_ID,
        &["Mail.ReadWrite", "User.Read.All", "GroupMember.Read.All"],
    );
    sandbox
}

fn mails(users: &[Value]) -> Vec<String> {
    users
        .iter()
        .map(|u| u["mail"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn users_come_100_a_page_by_default_and_up_to_999_with_top() {
    let sb = directory().await;
    let g = Graph::new(&sb, false).await;
    let (status, first) = g.get("/users").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["value"].as_array().unwrap().len(), 100);
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert!(next.contains("skiptoken="), "{next}");
    // Graph's default properties: no accountEnabled without $select.
    assert!(first["value"][0].get("accountEnabled").is_none());
    assert!(first["value"][0].get("userPrincipalName").is_some());

    let all = g
        .get_all("/users?$top=999&$select=id,mail,accountEnabled")
        .await;
    assert_eq!(all.len(), 252);
    let users = g.get_all("/users?$top=7&$select=mail").await;
    assert_eq!(
        mails(&users),
        mails(&all),
        "pages of 7 list the same users in the same order"
    );
    assert_eq!(users[0].as_object().unwrap().len(), 1, "{}", users[0]);

    let (status, body) = g.get("/users?$top=1000").await;
    assert_eq!((status, code(&body)), (400, "Request_BadRequest"), "{body}");
    // Not served rather than silently ignored.
    let (status, body) = g.get("/users?$filter=accountEnabled eq true").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn a_shared_mailbox_is_a_disabled_account_and_an_unlicensed_user_has_no_mailbox() {
    let sb = directory().await;
    let g = Graph::new(&sb, false).await;
    let all = g
        .get_all("/users?$top=999&$select=mail,accountEnabled")
        .await;
    let find = |mail: &str| {
        all.iter()
            .find(|u| u["mail"] == mail)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(find("info@contoso.com")["accountEnabled"], false);
    assert_eq!(find("intern@contoso.com")["accountEnabled"], true);
    assert_eq!(find("user000@contoso.com")["accountEnabled"], true);

    let (status, body) = g.get("/users/intern@contoso.com/mailFolders/inbox").await;
    assert_eq!(
        (status, code(&body)),
        (404, "MailboxNotEnabledForRESTAPI"),
        "{body}"
    );
    let (status, _) = g.get("/users/info@contoso.com/mailFolders/inbox").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_group_is_found_by_name_and_its_members_are_flattened_once_each() {
    let sb = directory().await;
    let g = Graph::new(&sb, false).await;
    let (status, found) = g
        .get("/groups?$filter=displayName eq 'sales'&$select=id")
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["value"][0]["id"], SALES);
    let (_, none) = g.get("/groups?$filter=displayName eq 'Marketing'").await;
    assert_eq!(none["value"].as_array().unwrap().len(), 0);

    let users = g
        .get_all(&format!(
            "/groups/{SALES}/transitiveMembers/microsoft.graph.user?$select=mail&$top=2"
        ))
        .await;
    let mut got = mails(&users);
    got.sort();
    assert_eq!(
        got,
        [
            "user001@contoso.com",
            "user002@contoso.com",
            "user003@contoso.com"
        ]
    );
    // Without the cast, the nested group is listed too, each object typed.
    let objects = g
        .get_all(&format!("/groups/{SALES}/transitiveMembers"))
        .await;
    let types: Vec<&str> = objects
        .iter()
        .map(|o| o["@odata.type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "#microsoft.graph.group")
            .count(),
        1
    );
    assert_eq!(types.len(), 4);

    let (status, body) = g
        .get("/groups/99999999-0000-0000-0000-000000000000/transitiveMembers")
        .await;
    assert_eq!((status, code(&body)), (404, "Request_ResourceNotFound"));
}

#[tokio::test]
async fn a_deleted_user_leaves_the_directory_and_its_groups() {
    let sb = directory().await;
    assert!(sb.delete_user("USER002@contoso.com"));
    assert!(!sb.delete_user("nobody@contoso.com"));
    let g = Graph::new(&sb, false).await;
    let users = mails(&g.get_all("/users?$select=mail&$top=999").await);
    assert_eq!(
        users.len(),
        251,
        "250 users and two more, less the deleted one"
    );
    assert!(!users.contains(&"user002@contoso.com".to_owned()));
    let members = g
        .get_all(&format!(
            "/groups/{SALES}/transitiveMembers/microsoft.graph.user?$select=mail"
        ))
        .await;
    let mut got = mails(&members);
    got.sort();
    assert_eq!(got, ["user001@contoso.com", "user003@contoso.com"]);
}

#[tokio::test]
async fn the_directory_needs_its_own_permissions() {
    let sb = directory().await;
    sb.set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite"]);
    let g = Graph::new(&sb, false).await;
    for path in [
        "/users".to_owned(),
        format!("/groups/{SALES}/transitiveMembers"),
    ] {
        let (status, body) = g.get(&path).await;
        assert_eq!(
            (status, code(&body)),
            (403, "Authorization_RequestDenied"),
            "{path}: {body}"
        );
    }
    // Users alone do not give groups.
    sb.set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite", "User.Read.All"]);
    let g = Graph::new(&sb, false).await;
    assert_eq!(g.get("/users").await.0, 200);
    assert_eq!(g.get("/groups").await.0, 403);
}
