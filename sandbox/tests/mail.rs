//! Folders, messages, ids, delta, throttling, faults, streaming and the control API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Graph, code, enc, message};
use futures::StreamExt;
use graph_sandbox::{DEFAULT_TENANT, FaultKind, FaultRule, Mailbox, NewMessage, Sandbox, World};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

const A: &str = "a@contoso.com";

async fn sandbox_with(mailbox: Mailbox) -> Sandbox {
    Sandbox::start(World::default_test().mailbox(DEFAULT_TENANT, mailbox))
        .await
        .unwrap()
}

/// Messages received one minute apart, newest last added.
fn numbered(mut mb: Mailbox, folder: &str, n: usize) -> Mailbox {
    let base = OffsetDateTime::now_utc() - time::Duration::days(1);
    for i in 0..n {
        mb = mb.message(
            folder,
            NewMessage::new(&format!("m{i:02}")).received(base + time::Duration::minutes(i as i64)),
        );
    }
    mb
}

fn subjects(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| v["subject"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn folders_list_page_filter_and_resolve_well_known_names() {
    let sb = sandbox_with(
        Mailbox::new(A)
            .folder("Inbox/Backup Reports/Archive 2025")
            .folder("Bob's Stuff")
            .messages("Inbox/Backup Reports", 3),
    )
    .await;
    let g = Graph::new(&sb, false).await;

    let (s, b) = g.get("/users/a@contoso.com/mailFolders").await;
    assert_eq!(s, 200);
    let names: Vec<&str> = b["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 9, "{names:?}");
    assert!(
        names.contains(&"Inbox")
            && names.contains(&"Deleted Items")
            && !names.contains(&"Recoverable Items")
    );
    assert!(b["@odata.nextLink"].is_null());

    let all = g.get_all("/users/a@contoso.com/mailFolders?$top=4").await;
    assert_eq!(all.len(), 9);

    let (s, b) = g
        .get("/users/a@contoso.com/mailFolders?$filter=displayName%20eq%20'bob''s%20stuff'")
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"][0]["displayName"], "Bob's Stuff");

    let (s, inbox) = g.get("/users/a@contoso.com/mailFolders/Inbox").await;
    assert_eq!(s, 200);
    assert_eq!(inbox["displayName"], "Inbox");
    assert_eq!(inbox["childFolderCount"], 1);
    let inbox_id = inbox["id"].as_str().unwrap();
    assert!(inbox_id.contains('/') && inbox_id.contains('+') && inbox_id.contains('='));
    let (s, root) = g
        .get("/users/a@contoso.com/mailFolders/msgfolderroot?$select=id")
        .await;
    assert_eq!(s, 200);
    assert_eq!(inbox["parentFolderId"], root["id"]);
    assert!(root["displayName"].is_null());

    let path = format!(
        "/users/a@contoso.com/mailFolders/{}/childFolders?$filter=displayName eq 'BACKUP REPORTS'&$select=id,displayName,totalItemCount",
        enc(inbox_id)
    );
    let (s, b) = g.get(&path).await;
    assert_eq!(s, 200, "{b}");
    let reports = &b["value"][0];
    assert_eq!(reports["totalItemCount"], 3);
    assert!(reports["unreadItemCount"].is_null());

    let (s, b) = g
        .get("/users/a@contoso.com/mailFolders/recoverableitemsdeletions")
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["isHidden"], true);

    let (s, b) = g
        .get("/users/a@contoso.com/mailFolders/AQMkADAwAAAAAAAAAAAAAAAAAAAA")
        .await;
    assert_eq!((s, code(&b)), (404, "ErrorItemNotFound"));
    let (s, b) = g.get("/users/a@contoso.com/mailFolders/nonsense").await;
    assert_eq!((s, code(&b)), (400, "ErrorInvalidIdMalformed"));
}

#[tokio::test]
async fn skip_paging_counts_against_the_folder_as_it_is_now() {
    let sb = sandbox_with(numbered(Mailbox::new(A), "Inbox", 25)).await;
    let g = Graph::new(&sb, false).await;
    let (s, page1) = g
        .get("/users/a@contoso.com/mailFolders/inbox/messages?$select=subject,receivedDateTime")
        .await;
    assert_eq!(s, 200);
    let values = page1["value"].as_array().unwrap();
    assert_eq!(
        subjects(values),
        (15..25)
            .rev()
            .map(|i| format!("m{i:02}"))
            .collect::<Vec<_>>()
    );
    // Only the selected properties plus id and @odata.etag.
    let keys: Vec<&String> = values[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    let next = page1["@odata.nextLink"].as_str().unwrap().to_owned();
    assert!(
        next.starts_with(&sb.url()) && next.contains("skip=10"),
        "{next}"
    );

    for v in values {
        let (s, _) = g
            .post(
                &format!(
                    "/users/a@contoso.com/messages/{}/move",
                    enc(v["id"].as_str().unwrap())
                ),
                json!({"destinationId": "archive"}),
            )
            .await;
        assert_eq!(s, 201);
    }
    // The window shifted: m05..m14 are skipped, as on Graph.
    let (s, page2) = g.get(&next).await;
    assert_eq!(s, 200);
    assert_eq!(
        subjects(page2["value"].as_array().unwrap()),
        (0..5).rev().map(|i| format!("m{i:02}")).collect::<Vec<_>>()
    );
    assert!(page2["@odata.nextLink"].is_null());

    let (_, asc) = g.get("/users/a@contoso.com/mailFolders/inbox/messages?$orderby=receivedDateTime%20asc&$top=2").await;
    assert_eq!(subjects(asc["value"].as_array().unwrap()), ["m00", "m01"]);
    let (s, b) = g
        .get("/users/a@contoso.com/mailFolders/inbox/messages?$top=1001")
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = g
        .get("/users/a@contoso.com/mailFolders/inbox/messages?$select=nope")
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(sb.folder_messages(A, "Archive").len(), 10);
}

#[tokio::test]
async fn immutable_ids_survive_moves_and_rest_ids_do_not() {
    let sb = sandbox_with(Mailbox::new(A).message(
        "Inbox",
        NewMessage::new("hello").from("Alex", "alex@fabrikam.com"),
    ))
    .await;
    let rest = Graph::new(&sb, false).await;
    let immutable = Graph {
        immutable: true,
        ..rest.clone()
    };
    let info = sb.messages(A).pop().unwrap();

    let (_, listed) = immutable
        .get("/users/a@contoso.com/mailFolders/inbox/messages")
        .await;
    assert_eq!(listed["value"][0]["id"], info.immutable_id.as_str());
    let (_, listed) = rest
        .get("/users/a@contoso.com/mailFolders/inbox/messages")
        .await;
    assert_eq!(listed["value"][0]["id"], info.rest_id.as_str());
    let m = &listed["value"][0];
    assert_eq!(m["from"]["emailAddress"]["address"], "alex@fabrikam.com");
    assert_eq!(m["toRecipients"][0]["emailAddress"]["address"], A);
    for field in [
        "createdDateTime",
        "receivedDateTime",
        "sentDateTime",
        "internetMessageId",
        "conversationId",
        "parentFolderId",
        "@odata.etag",
        "bodyPreview",
    ] {
        assert!(m[field].is_string(), "{field}");
    }

    let (s, moved) = rest
        .post(
            &format!("/users/a@contoso.com/messages/{}/move", enc(&info.rest_id)),
            json!({"destinationId": "deleteditems"}),
        )
        .await;
    assert_eq!(s, 201);
    let new_rest = moved["id"].as_str().unwrap();
    assert_ne!(new_rest, info.rest_id);
    let (s, b) = rest
        .get(&format!(
            "/users/a@contoso.com/messages/{}",
            enc(&info.rest_id)
        ))
        .await;
    assert_eq!((s, code(&b)), (404, "ErrorItemNotFound"));
    assert_eq!(
        message(&b),
        "The specified object was not found in the store."
    );
    let (s, _) = rest
        .get(&format!("/users/a@contoso.com/messages/{}", enc(new_rest)))
        .await;
    assert_eq!(s, 200);

    let (s, moved) = immutable
        .post(
            &format!(
                "/users/a@contoso.com/messages/{}/move",
                enc(&info.immutable_id)
            ),
            json!({"destinationId": "inbox"}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(moved["id"], info.immutable_id.as_str());
    let after = sb.messages(A).pop().unwrap();
    assert_eq!(after.immutable_id, info.immutable_id);
    assert_eq!(after.folder_path, "Inbox");

    let (s, b) = rest
        .post(
            &format!(
                "/users/a@contoso.com/messages/{}/move",
                enc(&info.immutable_id)
            ),
            json!({"destinationId": "AQMkADAwAAAAAAAAAAAAAAAAAAAA"}),
        )
        .await;
    assert_eq!((s, code(&b)), (404, "ErrorItemNotFound"));

    let log = sb.requests();
    let graph: Vec<_> = log.iter().filter(|r| r.path.starts_with("/v1.0")).collect();
    assert!(graph.iter().any(|r| r.immutable_ids) && graph.iter().any(|r| !r.immutable_ids));
    assert!(graph.iter().all(|r| r.mailbox.as_deref() == Some(A)));
}

#[tokio::test]
async fn raw_slash_in_an_id_is_malformed() {
    let sb = sandbox_with(Mailbox::new(A).messages("Inbox", 1)).await;
    let g = Graph::new(&sb, false).await;
    let id = sb.messages(A)[0].rest_id.clone();
    assert!(id.contains('/'));
    let (s, b) = g
        .get(&format!("/users/a@contoso.com/messages/{id}/$value"))
        .await;
    assert_eq!((s, code(&b)), (400, "ErrorInvalidIdMalformed"));
    assert_eq!(message(&b), "Id is malformed.");
    let (s, b) = g.get(&format!("/users/a@contoso.com/messages/{id}")).await;
    assert_eq!((s, code(&b)), (400, "ErrorInvalidIdMalformed"));
    let (s, _) = g
        .get(&format!(
            "/users/a@contoso.com/messages/{}/$value",
            enc(&id)
        ))
        .await;
    assert_eq!(s, 200);
    let (s, b) = g.get("/users/a@contoso.com/calendar").await;
    assert_eq!(s, 404, "{b}");
    let r = g
        .req(
            reqwest::Method::PUT,
            &format!("/users/a@contoso.com/messages/{}", enc(&id)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let (s, b) = g
        .patch(
            &format!("/users/a@contoso.com/messages/{}", enc(&id)),
            json!({"nope": 1}),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "RequestBodyRead"));
    let r = g
        .req(
            reqwest::Method::POST,
            &format!("/users/a@contoso.com/messages/{}/move", enc(&id)),
        )
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (s, b) = g
        .get("/users/a@contoso.com/mailFolders/inbox/messages?$top=abc&$skip=-1")
        .await;
    assert_eq!(s, 400, "{b}");
    let r = reqwest::get(format!("{}/nothing/here", sb.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn mime_is_rfc822_with_exact_length_and_matching_hash() {
    let sb = sandbox_with(
        Mailbox::new(A).message(
            "Inbox",
            NewMessage::new("Invoice INV-1")
                .from("Fabrikam", "ar@fabrikam.com")
                .body_text("Please pay.")
                .attachment("INV-1.pdf", "application/pdf", 10_000)
                .internet_message_id("<inv-1@fabrikam.com>"),
        ),
    )
    .await;
    let g = Graph::new(&sb, true).await;
    let info = sb.messages(A).pop().unwrap();
    assert_eq!(info.internet_message_id, "<inv-1@fabrikam.com>");
    let r = g
        .req(
            reqwest::Method::GET,
            &format!(
                "/users/a@contoso.com/messages/{}/$value",
                enc(&info.immutable_id)
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.content_length(), Some(info.size));
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, info.size);
    assert_eq!(hex::encode(Sha256::digest(&bytes)), info.sha256);
    assert_eq!(
        sb.mime_bytes(A, &info.immutable_id).unwrap(),
        bytes.to_vec()
    );
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    for h in [
        "From: \"Fabrikam\" <ar@fabrikam.com>\r\n",
        "Subject: Invoice INV-1\r\n",
        "Message-ID: <inv-1@fabrikam.com>\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/mixed;",
        "Content-Transfer-Encoding: base64",
        "filename=\"INV-1.pdf\"",
    ] {
        assert!(text.contains(h), "{h}");
    }
    // The same message built again has the same bytes (attachments are seeded).
    let again = sb.add_message(
        A,
        "Inbox",
        NewMessage::new("Invoice INV-1")
            .from("Fabrikam", "ar@fabrikam.com")
            .body_text("Please pay.")
            .attachment("INV-1.pdf", "application/pdf", 10_000)
            .internet_message_id("<inv-1@fabrikam.com>")
            .received(info.received),
    );
    assert_eq!(again.size, info.size);
}

#[tokio::test]
async fn a_mime_body_takes_longer_the_bigger_it_is() {
    let sb = sandbox_with(
        Mailbox::new(A)
            .message("Inbox", NewMessage::generated("small", 1024))
            .message("Inbox", NewMessage::generated("large", 400 * 1024)),
    )
    .await;
    let g = Graph::new(&sb, true).await;
    // 0.5 ms per KiB: 200 ms more for the 400 KiB message.
    sb.set_latency_model(Duration::from_micros(500), 0.0);
    let mut took = Vec::new();
    for info in sb.messages(A) {
        let started = Instant::now();
        let path = format!("/users/{A}/messages/{}/$value", enc(&info.immutable_id));
        let r = g.req(reqwest::Method::GET, &path).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        took.push((info.subject, started.elapsed()));
    }
    took.sort();
    // A lower bound only: how fast the small one is depends on the machine.
    let large = took[0].1;
    assert_eq!(took[0].0, "large");
    assert!(large >= Duration::from_millis(200), "{took:?}");
}

#[tokio::test]
async fn a_50_mb_generated_message_streams_with_the_right_hash() {
    let sb = sandbox_with(Mailbox::new(A)).await;
    let info = sb.add_message(
        A,
        "Inbox",
        NewMessage::generated("Big backup log", 50_000_000),
    );
    assert!(
        info.size > 49_900_000 && info.size <= 50_000_000,
        "{}",
        info.size
    );
    let g = Graph::new(&sb, true).await;
    let r = g
        .req(
            reqwest::Method::GET,
            &format!(
                "/users/a@contoso.com/messages/{}/$value",
                enc(&info.immutable_id)
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(info.size));
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut chunks = 0;
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        total += chunk.len() as u64;
        chunks += 1;
        hasher.update(&chunk);
    }
    assert_eq!(total, info.size);
    assert!(chunks > 100);
    assert_eq!(hex::encode(hasher.finalize()), info.sha256);
    assert_eq!(sb.mime_sha256(A, &info.immutable_id).unwrap(), info.sha256);
    assert_eq!(sb.max_concurrency(A), 1);
    assert_eq!(sb.stats().mailboxes[A].in_flight, 0);
}

async fn delta_round(g: &Graph, start: &str) -> (Vec<Value>, String, usize) {
    let mut items = Vec::new();
    let mut url = g.url(start);
    let mut pages = 0;
    loop {
        let r = g
            .req(reqwest::Method::GET, &url)
            .header("Prefer", "odata.maxpagesize=10")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["preference-applied"],
            "odata.maxpagesize=10, IdType=\"ImmutableId\""
        );
        let b: Value = r.json().await.unwrap();
        pages += 1;
        items.extend(b["value"].as_array().unwrap().iter().cloned());
        if let Some(next) = b["@odata.nextLink"].as_str() {
            assert!(next.contains("$skiptoken="));
            url = next.to_owned();
        } else {
            let delta = b["@odata.deltaLink"].as_str().unwrap();
            assert!(delta.contains("$deltatoken="));
            return (items, delta.to_owned(), pages);
        }
    }
}

#[tokio::test]
async fn delta_rounds_report_created_updated_and_removed_then_expire() {
    let sb = sandbox_with(numbered(Mailbox::new(A), "Inbox/Reports", 15)).await;
    let g = Graph::new(&sb, true).await;
    let start = "/users/a@contoso.com/mailFolders/inbox/childFolders/";
    let (_, reports) = g
        .get(&format!("{start}?$filter=displayName eq 'Reports'"))
        .await;
    let folder = reports["value"][0]["id"].as_str().unwrap().to_owned();
    let delta = format!(
        "/users/a@contoso.com/mailFolders/{}/messages/delta?$select=subject,isRead",
        enc(&folder)
    );

    let (first, link, pages) = delta_round(&g, &delta).await;
    assert_eq!((first.len(), pages), (15, 2));
    assert!(
        first
            .iter()
            .all(|v| v["isRead"] == false && v.get("from").is_none())
    );

    // Nothing changed: an empty round.
    let (none, link, _) = delta_round(&g, &link).await;
    assert!(none.is_empty());

    let infos = sb.folder_messages(A, "Inbox/Reports");
    let created = sb.add_message(A, "Inbox/Reports", NewMessage::new("new one"));
    let (s, _) = g
        .patch(
            &format!(
                "/users/a@contoso.com/messages/{}",
                enc(&infos[0].immutable_id)
            ),
            json!({"isRead": true}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = g
        .post(
            &format!(
                "/users/a@contoso.com/messages/{}/move",
                enc(&infos[1].immutable_id)
            ),
            json!({"destinationId": "archive"}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        g.delete(&format!(
            "/users/a@contoso.com/messages/{}",
            enc(&infos[2].immutable_id)
        ))
        .await,
        204
    );

    let (second, link, _) = delta_round(&g, &link).await;
    assert_eq!(second.len(), 4, "{second:#?}");
    let find = |id: &str| second.iter().find(|v| v["id"] == id).unwrap();
    assert_eq!(find(&created.immutable_id)["subject"], "new one");
    assert_eq!(find(&infos[0].immutable_id)["isRead"], true);
    assert_eq!(
        find(&infos[1].immutable_id)["@removed"]["reason"],
        "deleted"
    );
    assert_eq!(
        find(&infos[2].immutable_id)["@removed"]["reason"],
        "deleted"
    );

    // Deleted messages are in Recoverable Items, not listed anywhere visible.
    let deleted = sb
        .messages(A)
        .into_iter()
        .find(|m| m.immutable_id == infos[2].immutable_id)
        .unwrap();
    assert_eq!(deleted.folder_path, "Recoverable Items");
    let (_, listed) = g.get("/users/a@contoso.com/messages?$top=100").await;
    assert!(
        listed["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["id"] != infos[2].immutable_id.as_str())
    );

    // A round in progress: page 1, then expiry, then both tokens are gone.
    let r = g
        .req(reqwest::Method::GET, &g.url(&delta))
        .header("Prefer", "odata.maxpagesize=5")
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    let next = b["@odata.nextLink"].as_str().unwrap().to_owned();
    sb.expire_delta_tokens(A);
    for url in [next, link] {
        let r = g.req(reqwest::Method::GET, &url).send().await.unwrap();
        assert_eq!(r.status(), 410);
        assert!(r.headers().contains_key("location"));
        let b: Value = r.json().await.unwrap();
        assert_eq!(code(&b), "SyncStateNotFound");
        assert!(message(&b).starts_with("The sync state generation is not found; generation="));
    }
    let (again, _, _) = delta_round(&g, &delta).await;
    assert_eq!(again.len(), 14);
}

#[tokio::test]
async fn paging_in_a_delta_round_is_stable_while_messages_move() {
    let sb = sandbox_with(numbered(Mailbox::new(A), "Inbox", 30)).await;
    let g = Graph::new(&sb, true).await;
    let r = g
        .req(
            reqwest::Method::GET,
            &g.url("/users/a@contoso.com/mailFolders/inbox/messages/delta"),
        )
        .header("Prefer", "odata.maxpagesize=10")
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    let mut seen: Vec<String> = b["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    // Move the first page's messages out mid-round; the rest of the round is unaffected.
    for id in seen.clone() {
        g.post(
            &format!("/users/a@contoso.com/messages/{}/move", enc(&id)),
            json!({"destinationId": "archive"}),
        )
        .await;
    }
    let (rest, link, _) = delta_round(&g, b["@odata.nextLink"].as_str().unwrap()).await;
    seen.extend(rest.iter().map(|v| v["id"].as_str().unwrap().to_owned()));
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 30);
    let (next, _, _) = delta_round(&g, &link).await;
    assert_eq!(next.len(), 10);
    assert!(next.iter().all(|v| v["@removed"]["reason"] == "deleted"));
}

#[tokio::test]
async fn a_fifth_concurrent_request_gets_429_with_retry_after() {
    let sb = sandbox_with(Mailbox::new(A)).await;
    sb.set_latency(Duration::from_millis(1000));
    sb.set_throttle_retry_after(0.05);
    let g = Graph::new(&sb, false).await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let g = g.clone();
            tokio::spawn(async move {
                let r = g
                    .req(
                        reqwest::Method::GET,
                        "/users/a@contoso.com/mailFolders/inbox",
                    )
                    .send()
                    .await
                    .unwrap();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let status = r.status().as_u16();
                let b: Value = r.json().await.unwrap();
                (status, retry_after, b)
            })
        })
        .collect();
    let mut ok = 0;
    let mut throttled = 0;
    for t in tasks {
        let (status, retry_after, b) = t.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                throttled += 1;
                assert_eq!(retry_after.as_deref(), Some("0.05"));
                assert_eq!(code(&b), "ApplicationThrottled");
                assert_eq!(
                    message(&b),
                    "Application is over its MailboxConcurrency limit."
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok <= 4 && throttled >= 2, "ok {ok} throttled {throttled}");
    assert!(sb.max_concurrency(A) >= 5);
    assert_eq!(sb.stats().mailboxes[A].throttled, throttled);
}

#[tokio::test]
async fn slots_are_free_before_responses_arrive_so_four_workers_never_hit_429() {
    let sb = sandbox_with(Mailbox::new(A).messages("Inbox", 4)).await;
    let g = Graph::new(&sb, false).await;
    let ids: Vec<String> = sb.messages(A).into_iter().map(|m| m.rest_id).collect();
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let g = g.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    let r = g
                        .req(
                            reqwest::Method::GET,
                            &format!("/users/a@contoso.com/messages/{}/$value", enc(&id)),
                        )
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap();
                    let (s, _) = g
                        .get("/users/a@contoso.com/mailFolders/inbox/messages?$top=2")
                        .await;
                    assert_eq!(s, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(sb.max_concurrency(A) <= 4);
    assert_eq!(sb.stats().mailboxes[A].throttled, 0);
}

#[tokio::test]
async fn request_budget_refuses_until_the_window_frees() {
    let sb = sandbox_with(Mailbox::new(A)).await;
    sb.set_request_budget(3, Duration::from_secs(30));
    let g = Graph::new(&sb, false).await;
    for _ in 0..3 {
        assert_eq!(g.get("/users/a@contoso.com/mailFolders/inbox").await.0, 200);
    }
    let r = g
        .req(
            reqwest::Method::GET,
            "/users/a@contoso.com/mailFolders/inbox",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: f64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 25.0 && wait <= 30.0, "{wait}");
}

#[tokio::test]
async fn each_fault_kind_fires_then_runs_out() {
    let sb = sandbox_with(Mailbox::new(A).messages("Inbox", 1)).await;
    let g = Graph::new(&sb, false).await;
    let id = sb.messages(A)[0].rest_id.clone();
    let value = format!("/users/a@contoso.com/messages/{}/$value", enc(&id));

    sb.inject(FaultRule::new(FaultKind::Status(503, Some(2.5))).path_contains("/$value"));
    let r = g.req(reqwest::Method::GET, &value).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2.5");
    let b: Value = r.json().await.unwrap();
    assert!(!code(&b).is_empty());
    assert_eq!(
        g.req(reqwest::Method::GET, &value)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    sb.inject(
        FaultRule::new(FaultKind::Throttle(0.5))
            .method("GET")
            .mailbox(A)
            .times(2),
    );
    for _ in 0..2 {
        let r = g
            .req(
                reqwest::Method::GET,
                "/users/a@contoso.com/mailFolders/inbox",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "0.5");
    }
    assert_eq!(g.get("/users/a@contoso.com/mailFolders/inbox").await.0, 200);

    sb.inject(FaultRule::new(FaultKind::Delay(Duration::from_millis(300))));
    let t = Instant::now();
    assert_eq!(g.get("/users/a@contoso.com/mailFolders/inbox").await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    // Truncated: the full Content-Length is announced, half arrives, the connection closes.
    sb.inject(FaultRule::new(FaultKind::TruncateBody).path_contains("/$value"));
    let r = g.req(reqwest::Method::GET, &value).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let size = sb.messages(A)[0].size;
    assert_eq!(r.content_length(), Some(size));
    let mut received = 0u64;
    let mut stream = r.bytes_stream();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => received += c.len() as u64,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed);
    assert_eq!(received, size / 2);
    sb.inject(FaultRule::new(FaultKind::TruncateBody).path_contains("/mailFolders"));
    let r = g
        .req(
            reqwest::Method::GET,
            "/users/a@contoso.com/mailFolders/inbox",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.is_err());

    sb.inject(FaultRule::new(FaultKind::DropConnection).path_contains("/mailFolders"));
    let result = match g
        .req(
            reqwest::Method::GET,
            "/users/a@contoso.com/mailFolders/inbox",
        )
        .send()
        .await
    {
        Err(_) => Err(()),
        Ok(r) => r.bytes().await.map(|_| ()).map_err(|_| ()),
    };
    assert!(result.is_err());
    sb.inject(FaultRule::new(FaultKind::DropConnection).path_contains("/$value"));
    let result = match g.req(reqwest::Method::GET, &value).send().await {
        Err(_) => Err(()),
        Ok(r) => r.bytes().await.map(|_| ()).map_err(|_| ()),
    };
    assert!(result.is_err());

    // Token endpoint faults.
    sb.inject(FaultRule::new(FaultKind::Status(503, None)).path_contains("/oauth2/v2.0/token"));
    let (s, _) = common::token_response(
        &sb,
        DEFAULT_TENANT,
        graph_sandbox::DEFAULT_CLIENT_ID,
        graph_sandbox::DEFAULT_SECRET,
        common::GRAPH_SCOPE,
    )
    .await;
    assert_eq!(s, 503);

    // Everything works again, and the log says which fault hit which request.
    let r = g.req(reqwest::Method::GET, &value).send().await.unwrap();
    assert_eq!(
        r.bytes().await.unwrap().len() as u64,
        sb.messages(A)[0].size
    );
    let faults: Vec<String> = sb.requests().into_iter().filter_map(|r| r.fault).collect();
    assert_eq!(
        faults,
        [
            "status",
            "throttle",
            "throttle",
            "delay",
            "truncateBody",
            "truncateBody",
            "dropConnection",
            "dropConnection",
            "status"
        ]
    );
    assert_eq!(sb.stats().mailboxes[A].in_flight, 0);
}

#[tokio::test]
async fn control_api_shares_the_rust_implementation() {
    let sb = Sandbox::start(World::demo()).await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("{}/_sandbox", sb.url());

    assert_eq!(
        sb.folder_messages("reports@contoso.com", "Inbox/Backup Reports")
            .len(),
        200
    );
    assert_eq!(
        sb.folder_messages("reports@contoso.com", "inbox/backup reports/archive 2025")
            .len(),
        30
    );
    assert_eq!(
        sb.folder_messages("invoices@contoso.com", "Inbox/Invoices")
            .len(),
        100
    );
    assert!(
        sb.folder_messages("invoices@contoso.com", "Inbox/Processed")
            .is_empty()
    );

    let r = http
        .post(format!("{base}/mailboxes/invoices@contoso.com/messages"))
        .json(&json!({"folder": "Inbox/Invoices", "subject": "Invoice X", "from": {"name": "Adatum", "address": "billing@adatum.com"},
                      "attachments": [{"filename": "x.pdf", "contentType": "application/pdf", "size": 1234}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["folderPath"], "Inbox/Invoices");
    let listed: Vec<Value> = http
        .get(format!(
            "{base}/mailboxes/invoices@contoso.com/messages?folder=Inbox/Invoices"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 101);
    assert_eq!(
        sb.folder_messages("invoices@contoso.com", "Inbox/Invoices")
            .len(),
        101
    );

    let r = http
        .post(format!("{base}/faults"))
        .json(&json!({"kind": "status", "status": 500, "pathContains": "/v1.0/", "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let g = Graph::new(&sb, false).await;
    let (s, b) = g.get("/users/invoices@contoso.com/mailFolders/inbox").await;
    assert_eq!(s, 500, "{b}");
    let (s, _) = g.get("/users/invoices@contoso.com/mailFolders/inbox").await;
    assert_eq!(s, 200);

    let r = http
        .post(format!("{base}/clock/advance"))
        .json(&json!({"seconds": 7200}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = g.get("/users/invoices@contoso.com/mailFolders/inbox").await;
    assert_eq!(s, 401);

    let r = http
        .post(format!("{base}/latency"))
        .json(&json!({"ms": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/mailboxes/reports@contoso.com/expire-delta"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/faults"))
        .json(&json!({"kind": "bogus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{base}/latency"))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let stats: Value = http
        .get(format!("{base}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["tokenRequests"], 1);
    assert!(
        stats["mailboxes"]["invoices@contoso.com"]["maxConcurrency"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let requests: Vec<Value> = http
        .get(format!("{base}/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(requests.len(), sb.requests().len());
    assert!(requests.iter().any(|r| r["status"] == 401));
}

/// Throughput on loopback; run with `cargo test --release -p graph-sandbox --test mail -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn throughput_on_loopback() {
    let mut world = World::default_test();
    for i in 0..8 {
        world = world.mailbox(
            DEFAULT_TENANT,
            Mailbox::new(&format!("m{i}@contoso.com")).messages("Inbox", 50),
        );
    }
    let sb = Sandbox::start(world).await.unwrap();
    sb.disable_request_budget();
    let g = Graph::new(&sb, true).await;
    let start = Instant::now();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let g = g.clone();
            tokio::spawn(async move {
                for _ in 0..500 {
                    let (s, _) = g.get(&format!("/users/m{}@contoso.com/mailFolders/inbox/messages?$select=id,subject&$top=10", i % 8)).await;
                    assert_eq!(s, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let n = 32.0 * 500.0;
    println!("{:.0} requests/s", n / start.elapsed().as_secs_f64());
}
