//! Sending (docs/graph.md section 12): drafts with extended properties, the `Any()` filter,
//! send, delivery, createReply, attachments, upload sessions, bounces and permissions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Graph, code, enc, http};
use graph_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_TENANT, Mailbox, NewMessage, Sandbox, World};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const A: &str = "a@contoso.com";
const B: &str = "b@contoso.com";
const KEY: &str = "String {00020329-0000-0000-C000-000000000046} Name MailroomIdempotencyKey";

async fn setup() -> (Sandbox, Graph) {
    let world = World::default_test()
        .mailbox(DEFAULT_TENANT, Mailbox::new(A).display_name("Alice"))
        .mailbox(DEFAULT_TENANT, Mailbox::new(B).display_name("Bob"));
    let sb = Sandbox::start(world).await.unwrap();
    sb.set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite", "Mail.Send"]);
    let g = Graph::new(&sb, true).await;
    (sb, g)
}

fn to(addresses: &[&str]) -> Value {
    Value::Array(
        addresses
            .iter()
            .map(|a| json!({"emailAddress": {"address": a}}))
            .collect(),
    )
}

/// The addresses of a recipient collection.
fn addresses(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["emailAddress"]["address"].as_str().unwrap().to_owned())
        .collect()
}

/// A draft in A's Drafts carrying the idempotency key; returns its immutable id.
async fn draft(g: &Graph, subject: &str, key: &str, recipients: &[&str]) -> String {
    let (s, b) = g
        .post(
            "/users/a@contoso.com/messages",
            json!({
                "subject": subject,
                "body": {"contentType": "text", "content": "Nightly report attached."},
                "toRecipients": to(recipients),
                "importance": "High",
                "singleValueExtendedProperties": [{"id": KEY, "value": key}],
            }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["isDraft"], true);
    assert_eq!(b["isRead"], true);
    assert_eq!(b["importance"], "high");
    // "The response does not include the matching extended property."
    assert!(b.get("singleValueExtendedProperties").is_none());
    b["id"].as_str().unwrap().to_owned()
}

/// `…/mailFolders/{folder}/messages` filtered on the key, `$select` and `$top` applied.
async fn find(g: &Graph, folder: &str, value: &str) -> Vec<Value> {
    let filter = format!(
        "singleValueExtendedProperties/Any(ep: ep/id eq '{KEY}' and ep/value eq '{value}')"
    );
    let (s, b) = g
        .get(&format!(
            "/users/a@contoso.com/mailFolders/{folder}/messages?$filter={}&$select=id,subject,isDraft&$top=5",
            enc(&filter)
        ))
        .await;
    assert_eq!(s, 200, "{b}");
    b["value"].as_array().unwrap().clone()
}

/// A POST without a body (`Content-Length: 0`, as the send reference asks).
async fn post_empty(g: &Graph, path: &str) -> (u16, Value) {
    let r = g.req(reqwest::Method::POST, path).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn send(g: &Graph, id: &str) -> (u16, Value) {
    post_empty(
        g,
        &format!("/users/a@contoso.com/messages/{}/send", enc(id)),
    )
    .await
}

#[tokio::test]
async fn a_draft_is_found_by_its_key_in_drafts_then_in_sent_items() {
    let (sb, g) = setup().await;
    let id = draft(&g, "Report", "abc-1", &[B]).await;
    draft(&g, "Other", "zzz-9", &[B]).await;
    assert_eq!(sb.folder_messages(A, "Drafts").len(), 2);
    assert!(sb.folder_messages(A, "Drafts")[0].is_draft);

    // The value compares case-insensitively; the Name part of the id case-sensitively.
    let found = find(&g, "drafts", "ABC-1").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], id.as_str());
    assert!(
        found[0].get("body").is_none() && found[0].get("singleValueExtendedProperties").is_none()
    );
    let wrong_name = KEY.replace("MailroomIdempotencyKey", "mailroomidempotencykey");
    let filter = format!(
        "singleValueExtendedProperties/Any(ep: ep/id eq '{wrong_name}' and ep/value eq 'abc-1')"
    );
    let (_, b) = g
        .get(&format!(
            "/users/a@contoso.com/messages?$filter={}",
            enc(&filter)
        ))
        .await;
    assert_eq!(b["value"].as_array().unwrap().len(), 0);

    // $expand brings the property back on GET.
    let expand = format!("singleValueExtendedProperties($filter=id eq '{KEY}')");
    let (s, b) = g
        .get(&format!(
            "/users/a@contoso.com/messages/{}?$select=subject&$expand={}",
            enc(&id),
            enc(&expand)
        ))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["singleValueExtendedProperties"],
        json!([{"id": KEY, "value": "abc-1"}])
    );

    let (s, b) = send(&g, &id).await;
    assert_eq!((s, b), (202, Value::Null));
    assert!(find(&g, "drafts", "abc-1").await.is_empty());
    let sent = find(&g, "sentitems", "abc-1").await;
    assert_eq!(sent.len(), 1);
    // The immutable id survives the send (the immutable-id guide).
    assert_eq!(sent[0]["id"], id.as_str());
    assert_eq!(sent[0]["isDraft"], false);
    let (s, b) = g
        .get(&format!("/users/a@contoso.com/messages/{}", enc(&id)))
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["isDraft"], false);
    assert!(b["sentDateTime"].is_string());

    let log = sb.sent_mail_with_property(KEY, "abc-1");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].draft_id.as_deref(), Some(id.as_str()));
    assert_eq!(log[0].extended_property(KEY), Some("abc-1"));
    assert!(sb.sent_mail_with_property(KEY, "zzz-9").is_empty());

    // A sent message is no draft: sending it again is refused, nothing is sent twice.
    let (s, b) = send(&g, &id).await;
    assert_eq!((s, code(&b)), (400, "ErrorInvalidOperation"));
    assert_eq!(sb.sent_mail().len(), 1);
}

#[tokio::test]
async fn a_sent_draft_reaches_in_tenant_inboxes_and_is_recorded_for_the_rest() {
    let (sb, g) = setup().await;
    let (s, b) = g
        .post(
            "/users/a@contoso.com/messages",
            json!({
                "subject": "Quarterly",
                "body": {"contentType": "html", "content": "<p>See <b>this</b></p>"},
                "toRecipients": to(&[B]),
                "ccRecipients": to(&["partner@fabrikam.com"]),
                "bccRecipients": to(&["audit@contoso.com"]),
            }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let (imid, conversation) = (b["internetMessageId"].clone(), b["conversationId"].clone());
    assert_eq!(b["body"]["content"], "<p>See <b>this</b></p>");
    assert_eq!(
        b["bccRecipients"][0]["emailAddress"]["address"],
        "audit@contoso.com"
    );

    // Delta on Drafts sees the new draft.
    let (s, d) = g
        .get("/users/a@contoso.com/mailFolders/drafts/messages/delta")
        .await;
    assert_eq!(s, 200);
    assert_eq!(d["value"][0]["id"], id.as_str());

    assert_eq!(send(&g, &id).await.0, 202);
    let inbox = sb.folder_messages(B, "Inbox");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].subject, "Quarterly");
    assert_eq!(inbox[0].internet_message_id, imid.as_str().unwrap());
    assert_eq!(inbox[0].conversation_id, conversation.as_str().unwrap());
    assert!(!inbox[0].is_draft);

    let (_, copy) = g
        .get(&format!(
            "/users/b@contoso.com/messages/{}?$select=from,toRecipients,ccRecipients,bccRecipients,isRead",
            enc(&inbox[0].immutable_id)
        ))
        .await;
    assert_eq!(copy["from"]["emailAddress"]["address"], A);
    assert_eq!(
        copy["ccRecipients"][0]["emailAddress"]["address"],
        "partner@fabrikam.com"
    );
    assert_eq!(copy["bccRecipients"], json!([]));
    assert_eq!(copy["isRead"], false);

    let log = &sb.sent_mail()[0];
    assert_eq!(log.delivered_to, [B]);
    assert!(log.bounced.is_empty());
    assert_eq!(log.bcc, ["audit@contoso.com"]);
    assert_eq!(log.content_type, "html");
    assert!(sb.folder_messages(A, "Drafts").is_empty());
    assert_eq!(sb.folder_messages(A, "Sent Items").len(), 1);
}

#[tokio::test]
async fn create_reply_threads_the_reply_into_the_conversation() {
    let (sb, g) = setup().await;
    let original = sb.add_message(
        A,
        "Inbox",
        NewMessage::new("Backup failed")
            .from("Bob", B)
            .cc("Carol", "carol@contoso.com")
            .internet_message_id("<orig-1@contoso.com>"),
    );
    let (_, orig) = g
        .get(&format!(
            "/users/a@contoso.com/messages/{}",
            enc(&original.immutable_id)
        ))
        .await;
    let path = format!(
        "/users/a@contoso.com/messages/{}/createReply",
        enc(&original.immutable_id)
    );

    let (s, b) = g
        .post(
            &path,
            json!({"comment": "x", "message": {"body": {"contentType": "text", "content": "y"}}}),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "BadRequest"));

    let (s, reply) = g
        .post(
            &path,
            json!({
                "comment": "Looking into it.",
                "message": {"singleValueExtendedProperties": [{"id": KEY, "value": "reply-1"}]},
            }),
        )
        .await;
    assert_eq!(s, 201, "{reply}");
    assert_eq!(reply["subject"], "RE: Backup failed");
    assert_eq!(reply["isDraft"], true);
    assert_eq!(reply["conversationId"], orig["conversationId"]);
    assert_eq!(addresses(&reply["toRecipients"]), [B]);
    assert_eq!(reply["ccRecipients"], json!([]));
    let reply_id = reply["id"].as_str().unwrap().to_owned();
    assert_eq!(find(&g, "drafts", "reply-1").await.len(), 1);

    // A draft cannot be replied to.
    let (s, b) = post_empty(
        &g,
        &format!(
            "/users/a@contoso.com/messages/{}/createReply",
            enc(&reply_id)
        ),
    )
    .await;
    assert_eq!((s, code(&b)), (400, "ErrorInvalidReferenceItem"));

    assert_eq!(send(&g, &reply_id).await.0, 202);
    let copy = &sb.folder_messages(B, "Inbox")[0];
    assert_eq!(
        copy.conversation_id,
        orig["conversationId"].as_str().unwrap()
    );
    let mime = String::from_utf8(sb.mime_bytes(B, &copy.immutable_id).unwrap()).unwrap();
    assert!(
        mime.contains("In-Reply-To: <orig-1@contoso.com>\r\n"),
        "{mime}"
    );
    assert!(mime.contains("References: <orig-1@contoso.com>\r\n"));
    assert!(mime.contains("Looking into it."));

    // createReplyAll keeps the other recipients.
    let (s, all) = post_empty(
        &g,
        &format!(
            "/users/a@contoso.com/messages/{}/createReplyAll",
            enc(&original.immutable_id)
        ),
    )
    .await;
    assert_eq!(s, 201, "{all}");
    assert_eq!(addresses(&all["ccRecipients"]), ["carol@contoso.com"]);
}

#[tokio::test]
async fn a_small_attachment_is_listed_and_travels_with_the_message() {
    let (sb, g) = setup().await;
    let id = draft(&g, "With file", "att-1", &[B]).await;
    let content = b"col1,col2\n1,2\n".to_vec();
    let path = format!("/users/a@contoso.com/messages/{}/attachments", enc(&id));
    let (s, a) = g
        .post(
            &path,
            json!({
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": "data.csv",
                "contentBytes": STANDARD.encode(&content),
            }),
        )
        .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(
        (a["name"].clone(), a["size"].clone()),
        (json!("data.csv"), json!(14))
    );
    assert_eq!(a["contentType"], "text/csv");

    let (s, b) = g
        .post(&path, json!({"name": "x.bin", "contentBytes": "AAAA"}))
        .await;
    assert_eq!((s, code(&b)), (400, "RequestBodyRead"));

    let (_, m) = g
        .get(&format!(
            "/users/a@contoso.com/messages/{}?$select=hasAttachments",
            enc(&id)
        ))
        .await;
    assert_eq!(m["hasAttachments"], true);

    assert_eq!(send(&g, &id).await.0, 202);
    let copy = &sb.folder_messages(B, "Inbox")[0];
    let (s, list) = g
        .get(&format!(
            "/users/b@contoso.com/messages/{}/attachments?$select=name,size,contentType",
            enc(&copy.immutable_id)
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(list["value"][0]["name"], "data.csv");
    assert_eq!(list["value"][0]["size"], 14);
    let mime = String::from_utf8(sb.mime_bytes(B, &copy.immutable_id).unwrap()).unwrap();
    assert!(mime.contains(&STANDARD.encode(&content)));
    let log = &sb.sent_mail()[0];
    assert_eq!(
        log.attachments[0].sha256.as_deref(),
        Some(hex::encode(Sha256::digest(&content)).as_str())
    );
}

async fn put(url: &str, range: &str, bytes: Vec<u8>) -> (u16, Value) {
    let r = http()
        .put(url)
        .header("Content-Range", range)
        .header("Content-Type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_large_file_uploads_in_three_ranges_in_order() {
    let (sb, g) = setup().await;
    let id = draft(&g, "Big file", "big-1", &[B]).await;
    let path = format!(
        "/users/a@contoso.com/messages/{}/attachments/createUploadSession",
        enc(&id)
    );
    let (s, b) = g
        .post(&path, json!({"AttachmentItem": {"attachmentType": "file", "name": "small.bin", "size": 1000}}))
        .await;
    assert_eq!(
        (s, code(&b)),
        (400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize")
    );

    const MIB: usize = 1024 * 1024;
    let size = 3 * MIB + MIB / 2;
    let file: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
    let (s, session) = g
        .post(
            &path,
            json!({"AttachmentItem": {"attachmentType": "file", "name": "big.bin", "size": size, "contentType": "application/octet-stream"}}),
        )
        .await;
    assert_eq!(s, 201, "{session}");
    assert_eq!(session["nextExpectedRanges"], json!(["0-"]));
    assert!(session["expirationDateTime"].is_string());
    let url = session["uploadUrl"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&sb.url()));

    let chunk = 3 * MIB / 2;
    let range = |a: usize, b: usize| format!("bytes {a}-{b}/{size}");
    let (s, b) = put(&url, &range(0, chunk - 1), file[..chunk].to_vec()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["nextExpectedRanges"], json!([chunk.to_string()]));

    // Out of order, a wrong total, a bearer token, or more than 4 MB: refused, nothing taken.
    let (s, _) = put(&url, &range(0, chunk - 1), file[..chunk].to_vec()).await;
    assert_eq!(s, 416);
    let (s, _) = put(
        &url,
        &format!("bytes {chunk}-{}/{}", 2 * chunk - 1, size + 1),
        file[chunk..2 * chunk].to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = put(&url, "bytes=0-", Vec::new()).await;
    assert_eq!(s, 400);
    let r = http()
        .put(&url)
        .bearer_auth(&g.token)
        .header("Content-Range", range(chunk, 2 * chunk - 1))
        .body(file[chunk..2 * chunk].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (s, _) = put(&url, &range(chunk, size - 1), vec![0; 4_000_001]).await;
    assert_eq!(s, 413);

    let (s, b) = put(
        &url,
        &range(chunk, 2 * chunk - 1),
        file[chunk..2 * chunk].to_vec(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["nextExpectedRanges"], json!([(2 * chunk).to_string()]));
    let r = http()
        .put(&url)
        .header("Content-Range", range(2 * chunk, size - 1))
        .body(file[2 * chunk..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/Attachments('"), "{location}");
    assert_eq!(r.bytes().await.unwrap().len(), 0);
    // The session is over.
    assert_eq!(put(&url, &range(0, 0), vec![0]).await.0, 404);

    let (_, list) = g
        .get(&format!(
            "/users/a@contoso.com/messages/{}/attachments?$select=name,size,contentType",
            enc(&id)
        ))
        .await;
    assert_eq!(list["value"][0]["name"], "big.bin");
    assert_eq!(list["value"][0]["size"], size);
    assert_eq!(send(&g, &id).await.0, 202);
    let sent = &sb.sent_mail()[0];
    assert_eq!(sent.attachments[0].size, size as u64);
    assert_eq!(
        sent.attachments[0].sha256.as_deref(),
        Some(hex::encode(Sha256::digest(&file)).as_str())
    );

    // A cancelled session is gone too.
    let id = draft(&g, "Another", "big-2", &[B]).await;
    let (_, session) = g
        .post(
            &format!(
                "/users/a@contoso.com/messages/{}/attachments/createUploadSession",
                enc(&id)
            ),
            json!({"AttachmentItem": {"attachmentType": "file", "name": "c.bin", "size": size}}),
        )
        .await;
    let url = session["uploadUrl"].as_str().unwrap();
    assert_eq!(
        http().delete(url).send().await.unwrap().status().as_u16(),
        204
    );
    assert_eq!(put(url, &range(0, 0), vec![0]).await.0, 404);
}

#[tokio::test]
async fn a_bouncing_recipient_earns_the_sender_a_non_delivery_report() {
    let (sb, g) = setup().await;
    sb.set_bouncing("Nobody@Fabrikam.com");
    let id = draft(&g, "Hello there", "ndr-1", &["nobody@fabrikam.com", B]).await;
    assert_eq!(send(&g, &id).await.0, 202);
    let inbox = sb.folder_messages(A, "Inbox");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].subject, "Undeliverable: Hello there");
    let (_, ndr) = g
        .get(&format!(
            "/users/a@contoso.com/messages/{}?$select=from",
            enc(&inbox[0].immutable_id)
        ))
        .await;
    assert_eq!(
        ndr["from"]["emailAddress"]["address"],
        "postmaster@contoso.com"
    );
    let log = &sb.sent_mail()[0];
    assert_eq!(log.bounced, ["nobody@fabrikam.com"]);
    assert_eq!(log.delivered_to, [B]);
}

#[tokio::test]
async fn sending_needs_mail_send_and_a_draft_fits_the_size_limit() {
    let (sb, g) = setup().await;
    let id = draft(&g, "Alert", "perm-1", &[B]).await;
    sb.set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite"]);
    let (s, b) = send(&g, &id).await;
    assert_eq!((s, code(&b)), (403, "ErrorAccessDenied"));

    sb.set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.Read", "Mail.Send"]);
    let (s, _) = g
        .post("/users/a@contoso.com/messages", json!({"subject": "x"}))
        .await;
    assert_eq!(s, 403);

    sb.set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite", "Mail.Send"]);
    sb.set_max_message_size(500);
    let (s, b) = send(&g, &id).await;
    assert_eq!((s, code(&b)), (400, "ErrorMessageSizeExceeded"));
    assert_eq!(sb.folder_messages(A, "Drafts").len(), 1);
    assert!(sb.sent_mail().is_empty());

    // No recipients: nothing to send.
    let (_, empty) = g
        .post(
            "/users/a@contoso.com/messages",
            json!({"subject": "nobody"}),
        )
        .await;
    assert_eq!(empty["toRecipients"], json!([]));
    sb.set_max_message_size(35 * 1024 * 1024);
    let (s, b) = send(&g, empty["id"].as_str().unwrap()).await;
    assert_eq!((s, code(&b)), (400, "ErrorInvalidRecipients"));
    assert_eq!(send(&g, &id).await.0, 202);
}

#[tokio::test]
async fn only_drafts_change_subject_and_body_and_drafts_can_be_deleted() {
    let (sb, g) = setup().await;
    let received = sb.add_message(A, "Inbox", NewMessage::new("Received"));
    let path = format!(
        "/users/a@contoso.com/messages/{}",
        enc(&received.immutable_id)
    );
    let (s, b) = g.patch(&path, json!({"subject": "changed"})).await;
    assert_eq!(
        (s, code(&b)),
        (400, "ErrorInvalidPropertyUpdateSentMessage")
    );
    let (s, b) = g
        .patch(
            &path,
            json!({"isRead": true, "singleValueExtendedProperties": [{"id": KEY, "value": "tag"}]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    let id = draft(&g, "Draft", "edit-1", &[B]).await;
    let path = format!("/users/a@contoso.com/messages/{}", enc(&id));
    let (s, b) = g
        .patch(
            &path,
            json!({
                "subject": "Draft v2",
                "toRecipients": to(&["c@contoso.com"]),
                "singleValueExtendedProperties": [{"id": KEY, "value": "edit-2"}],
            }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["subject"], "Draft v2");
    assert_eq!(addresses(&b["toRecipients"]), ["c@contoso.com"]);
    assert!(find(&g, "drafts", "edit-1").await.is_empty());
    assert_eq!(find(&g, "drafts", "edit-2").await.len(), 1);
    let mime = String::from_utf8(sb.mime_bytes(A, &id).unwrap()).unwrap();
    assert!(mime.contains("Subject: Draft v2\r\n"));

    assert_eq!(g.delete(&path).await, 204);
    assert!(sb.folder_messages(A, "Drafts").is_empty());
    assert_eq!(sb.folder_messages(A, "Recoverable Items").len(), 1);
}

/// A webhook receiver that echoes validation tokens and keeps the notification bodies.
async fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::extract::{Query, State};
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;
    async fn hook(
        State(seen): State<Seen>,
        Query(q): Query<std::collections::HashMap<String, String>>,
        body: axum::body::Bytes,
    ) -> (axum::http::StatusCode, String) {
        if let Some(token) = q.get("validationToken") {
            return (axum::http::StatusCode::OK, token.clone());
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        seen.lock()
            .unwrap()
            .extend(v["value"].as_array().cloned().unwrap_or_default());
        (axum::http::StatusCode::ACCEPTED, String::new())
    }
    let seen: Seen = Default::default();
    let app = axum::Router::new()
        .fallback(hook)
        .with_state(std::sync::Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn drafts_and_delivered_copies_are_notified_like_any_new_message() {
    let (sb, g) = setup().await;
    let (url, seen) = receiver().await;
    let expiry = (sb.now() + time::Duration::minutes(60))
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for resource in [
        "users/a@contoso.com/mailFolders('Drafts')/messages",
        "users/b@contoso.com/mailFolders('Inbox')/messages",
    ] {
        let (s, b) = g
            .post(
                "/subscriptions",
                json!({"changeType": "created", "notificationUrl": url, "resource": resource,
                       "expirationDateTime": expiry, "clientState": "s"}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let id = draft(&g, "Notify me", "n-1", &[B]).await;
    assert_eq!(send(&g, &id).await.0, 202);
    let copy = sb.folder_messages(B, "Inbox")[0].immutable_id.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ids: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|n| {
                n["resourceData"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        if ids.contains(&id) && ids.contains(&copy) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "notified: {ids:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_held_message_waits_in_the_outbox_until_released() {
    let (sb, g) = setup().await;
    sb.hold_outbox(true);
    let id = draft(&g, "Later", "hold-1", &[B]).await;
    assert_eq!(send(&g, &id).await.0, 202);
    let waiting = find(&g, "outbox", "hold-1").await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0]["isDraft"], false);
    assert!(find(&g, "drafts", "hold-1").await.is_empty());
    assert!(find(&g, "sentitems", "hold-1").await.is_empty());
    assert!(sb.sent_mail().is_empty() && sb.folder_messages(B, "Inbox").is_empty());

    // Over the control API, as other languages would.
    let r: Value = http()
        .post(format!("{}/_sandbox/outbox/release", sb.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["released"], 1);
    assert!(find(&g, "outbox", "hold-1").await.is_empty());
    assert_eq!(find(&g, "sentitems", "hold-1").await[0]["id"], id.as_str());
    assert_eq!(sb.sent_mail_with_property(KEY, "hold-1").len(), 1);
    assert_eq!(sb.folder_messages(B, "Inbox").len(), 1);
    assert_eq!(sb.release_outbox(), 0);
}
