//! The Graph API client against the stand-in Graph server: the bodies Meta gets, how its
//! errors are sorted, media downloads with their checks, and the address policy.

#[path = "common/graph.rs"]
mod graph;

use std::time::Duration;

use graph::{GRAPH_TOKEN, GraphStandIn, PHONE_NUMBER_ID, Route, meta_error, sha256_base64};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zaphook::channels::cloud::graph::{
    ErrorKind, GraphClient, GraphError, GraphTarget, Outbound, OutboundMessage, To,
};
use zaphook::delivery::ssrf::TargetPolicy;
use zaphook::domain::MediaType;

const LIMIT: usize = 1024 * 1024;

fn open_policy() -> TargetPolicy {
    TargetPolicy {
        allow_private: true,
        ..Default::default()
    }
}

fn client() -> GraphClient {
    GraphClient::new(&open_policy(), Duration::from_secs(5)).unwrap()
}

fn to_phone(content: Outbound) -> OutboundMessage {
    OutboundMessage {
        to: To::Phone("5511999990000".into()),
        content,
        reply_to: None,
    }
}

fn text(body: &str) -> OutboundMessage {
    to_phone(Outbound::Text { body: body.into() })
}

/// Sends `message` and answers the id and the body the stand-in got.
async fn send_ok(stand_in: &GraphStandIn, message: OutboundMessage) -> (String, Value) {
    let before = stand_in.sends().len();
    let id = client()
        .send(&stand_in.target(), &message)
        .await
        .unwrap_or_else(|e| panic!("send failed: {e:?}"));
    let sends = stand_in.wait_for_sends(before + 1).await;
    (id, sends[before].clone())
}

async fn send_err(stand_in: &GraphStandIn, message: OutboundMessage) -> GraphError {
    client()
        .send(&stand_in.target(), &message)
        .await
        .expect_err("the send should fail")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_text_without_a_link_has_no_preview() {
    let stand_in = GraphStandIn::start().await;
    let (id, body) = send_ok(&stand_in, text("hello there")).await;
    assert_eq!(id, "wamid.stand-in.1");
    assert_eq!(
        body,
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5511999990000",
            "type": "text",
            "text": {"body": "hello there", "preview_url": false},
        })
    );
    let request = &stand_in.send_requests()[0];
    assert_eq!(
        request.path,
        format!("/{}/{PHONE_NUMBER_ID}/messages", graph::GRAPH_VERSION)
    );
    assert_eq!(
        request.header("authorization"),
        format!("Bearer {GRAPH_TOKEN}")
    );
    assert_eq!(request.header("content-type"), "application/json");
    assert!(
        request.header("user-agent").starts_with("zaphook/"),
        "{}",
        request.header("user-agent")
    );
}

#[tokio::test]
async fn a_text_with_a_link_asks_for_a_preview() {
    let stand_in = GraphStandIn::start().await;
    let (_, body) = send_ok(&stand_in, text("the order: https://shop.example/o/1")).await;
    assert_eq!(body["text"]["preview_url"], true);
    let (id, body) = send_ok(&stand_in, text("plain http://x.example too")).await;
    assert_eq!(body["text"]["preview_url"], true);
    assert_eq!(id, "wamid.stand-in.2");
}

#[tokio::test]
async fn media_carry_caption_and_filename_where_meta_takes_them() {
    let stand_in = GraphStandIn::start().await;
    let media = |media_type, caption: Option<&str>, filename: Option<&str>| {
        to_phone(Outbound::Media {
            media_type,
            link: "https://cdn.example/file".into(),
            caption: caption.map(str::to_string),
            filename: filename.map(str::to_string),
        })
    };
    let (_, body) = send_ok(
        &stand_in,
        media(
            MediaType::Document,
            Some("the invoice"),
            Some("invoice.pdf"),
        ),
    )
    .await;
    assert_eq!(body["type"], "document");
    assert_eq!(
        body["document"],
        json!({"link": "https://cdn.example/file", "caption": "the invoice", "filename": "invoice.pdf"})
    );
    let (_, body) = send_ok(
        &stand_in,
        media(MediaType::Image, Some("a photo"), Some("ignored.jpg")),
    )
    .await;
    assert_eq!(
        body["image"],
        json!({"link": "https://cdn.example/file", "caption": "a photo"})
    );
    let (_, body) = send_ok(&stand_in, media(MediaType::Audio, Some("no caption"), None)).await;
    assert_eq!(body["type"], "audio");
    assert_eq!(body["audio"], json!({"link": "https://cdn.example/file"}));
    let (_, body) = send_ok(&stand_in, media(MediaType::Sticker, None, None)).await;
    assert_eq!(body["sticker"], json!({"link": "https://cdn.example/file"}));
}

#[tokio::test]
async fn a_template_carries_its_components() {
    let stand_in = GraphStandIn::start().await;
    let components = json!([
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.example/h.png"}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "#42"}]},
    ]);
    let (_, body) = send_ok(
        &stand_in,
        to_phone(Outbound::Template {
            name: "order_ready".into(),
            language: "pt_BR".into(),
            components: Some(components.clone()),
        }),
    )
    .await;
    assert_eq!(body["type"], "template");
    assert_eq!(
        body["template"],
        json!({"name": "order_ready", "language": {"code": "pt_BR"}, "components": components})
    );
}

#[tokio::test]
async fn a_reaction_names_the_message_and_the_emoji() {
    let stand_in = GraphStandIn::start().await;
    let (_, body) = send_ok(
        &stand_in,
        to_phone(Outbound::Reaction {
            message_id: "wamid.HBgLMTY0NjcwNDM1OTU".into(),
            emoji: "👍".into(),
        }),
    )
    .await;
    assert_eq!(body["type"], "reaction");
    assert_eq!(
        body["reaction"],
        json!({"message_id": "wamid.HBgLMTY0NjcwNDM1OTU", "emoji": "👍"})
    );
}

#[tokio::test]
async fn a_reply_carries_the_context() {
    let stand_in = GraphStandIn::start().await;
    let mut message = text("answering that");
    message.reply_to = Some("wamid.earlier".into());
    let (_, body) = send_ok(&stand_in, message).await;
    assert_eq!(body["context"], json!({"message_id": "wamid.earlier"}));
    let (_, body) = send_ok(&stand_in, text("no reply")).await;
    assert!(body.get("context").is_none(), "{body}");
}

#[tokio::test]
async fn a_business_scoped_user_id_goes_in_recipient() {
    let stand_in = GraphStandIn::start().await;
    let (id, body) = send_ok(
        &stand_in,
        OutboundMessage {
            to: To::UserId("BR.13491208655302741918".into()),
            content: Outbound::Text { body: "oi".into() },
            reply_to: None,
        },
    )
    .await;
    assert!(id.starts_with("wamid."));
    assert_eq!(body["recipient"], "BR.13491208655302741918");
    assert!(
        body.get("to").is_none(),
        "to would win over recipient: {body}"
    );
}

#[tokio::test]
async fn a_server_error_is_transient() {
    let stand_in = GraphStandIn::start().await;
    stand_in.fail_next_sends(&[(500, meta_error(131000, "Something went wrong", None))]);
    let e = send_err(&stand_in, text("hi")).await;
    assert_eq!(e.kind, ErrorKind::Transient);
    assert_eq!((e.code, e.http_status), (Some(131000), Some(500)));
    assert_eq!(e.title, "Something went wrong");
    assert!(!e.token_refused);
    // The next attempt gets through.
    let (id, _) = send_ok(&stand_in, text("hi")).await;
    assert_eq!(id, "wamid.stand-in.1");
}

#[tokio::test]
async fn a_bare_5xx_without_a_meta_body_is_transient() {
    let stand_in = GraphStandIn::start().await;
    stand_in.fail_next_sends(&[(502, json!("bad gateway"))]);
    let e = send_err(&stand_in, text("hi")).await;
    assert_eq!(e.kind, ErrorKind::Transient);
    assert_eq!((e.code, e.title.as_str()), (None, "HTTP 502"));
}

#[tokio::test]
async fn throttling_is_transient() {
    let stand_in = GraphStandIn::start().await;
    stand_in.fail_next_sends(&[
        (
            400,
            meta_error(
                130429,
                "Rate limit hit",
                Some("Cloud API message throughput has been reached."),
            ),
        ),
        (
            400,
            meta_error(
                131056,
                "(Business Account, Consumer Account) pair rate limit hit",
                None,
            ),
        ),
    ]);
    let e = send_err(&stand_in, text("hi")).await;
    assert_eq!((e.kind, e.code), (ErrorKind::Transient, Some(130429)));
    assert_eq!(e.title, "Cloud API message throughput has been reached.");
    let e = send_err(&stand_in, text("hi")).await;
    assert_eq!((e.kind, e.code), (ErrorKind::Transient, Some(131056)));
}

#[tokio::test]
async fn outside_the_window_is_permanent_and_asks_for_a_template() {
    let stand_in = GraphStandIn::start().await;
    stand_in.fail_next_sends(&[(
        400,
        meta_error(
            131047,
            "Re-engagement message",
            Some("Message failed to send because more than 24 hours have passed since the customer last replied to this number."),
        ),
    )]);
    let e = send_err(&stand_in, text("hi")).await;
    assert_eq!((e.kind, e.code), (ErrorKind::Permanent, Some(131047)));
    assert!(e.title.contains("template message"), "{}", e.title);
    assert!(e.title.contains("24-hour"), "{}", e.title);
}

#[tokio::test]
async fn other_meta_refusals_are_permanent() {
    let stand_in = GraphStandIn::start().await;
    stand_in.fail_next_sends(&[
        (400, meta_error(131026, "Message undeliverable", None)),
        (400, meta_error(131051, "Unsupported message type", None)),
        (
            400,
            meta_error(368, "Temporarily blocked for policies violations", None),
        ),
    ]);
    for code in [131026, 131051, 368] {
        let e = send_err(&stand_in, text("hi")).await;
        assert_eq!((e.kind, e.code), (ErrorKind::Permanent, Some(code)));
        assert!(!e.token_refused);
    }
}

#[tokio::test]
async fn a_refused_token_is_permanent_and_flagged() {
    let stand_in = GraphStandIn::start().await;
    let target = GraphTarget {
        access_token: "an-expired-token".into(),
        ..stand_in.target()
    };
    let e = client().send(&target, &text("hi")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);
    assert_eq!((e.code, e.http_status), (Some(190), Some(401)));
    assert!(e.token_refused);
    assert_eq!(stand_in.send_requests()[0].status, 401);
}

#[tokio::test]
async fn a_2xx_without_a_message_id_is_transient() {
    let stand_in = GraphStandIn::start().await;
    stand_in.fail_next_sends(&[(
        200,
        json!({"messaging_product": "whatsapp", "messages": []}),
    )]);
    let e = send_err(&stand_in, text("hi")).await;
    assert_eq!(e.kind, ErrorKind::Transient);
    assert_eq!(e.title, "answer without a message id");
}

#[tokio::test]
async fn a_closed_port_is_a_transient_network_error() {
    // Bind and drop: the port is free and nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = GraphTarget {
        base_url: format!("http://127.0.0.1:{port}"),
        version: "v25.0".into(),
        phone_number_id: PHONE_NUMBER_ID.into(),
        access_token: GRAPH_TOKEN.into(),
    };
    let e = client().send(&target, &text("hi")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient);
    assert_eq!((e.code, e.http_status), (None, None));
    assert!(e.title.starts_with("connect: "), "{}", e.title);
    let e = client()
        .download_media(&target, "m1", None, LIMIT)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient);
}

#[tokio::test]
async fn a_slow_answer_times_out_as_transient() {
    let stand_in = GraphStandIn::start().await;
    stand_in.set_send_delay(Duration::from_secs(3));
    let quick = GraphClient::new(&open_policy(), Duration::from_millis(300)).unwrap();
    let e = quick
        .send(&stand_in.target(), &text("hi"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient);
    assert!(e.title.starts_with("timeout: "), "{}", e.title);
}

#[tokio::test]
async fn media_downloads_with_its_sha256_checked() {
    let stand_in = GraphStandIn::start().await;
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    stand_in.add_media("m1", bytes.clone(), "image/jpeg");
    let expected = sha256_base64(&bytes);
    let media = client()
        .download_media(&stand_in.target(), "m1", Some(&expected), LIMIT)
        .await
        .unwrap();
    assert_eq!(media.bytes, bytes);
    assert_eq!(media.mime_type.as_deref(), Some("image/jpeg"));
    assert_eq!(media.sha256_hex, hex(&Sha256::digest(&bytes)));

    let requests = stand_in.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].route, Route::MediaLookup);
    assert_eq!(requests[0].path, format!("/{}/m1", graph::GRAPH_VERSION));
    assert_eq!(requests[1].route, Route::MediaDownload);
    for r in &requests {
        assert_eq!(r.header("authorization"), format!("Bearer {GRAPH_TOKEN}"));
        assert_eq!(r.status, 200);
    }

    // Without a digest from the callback, the lookup's own is still checked.
    let media = client()
        .download_media(&stand_in.target(), "m1", None, LIMIT)
        .await
        .unwrap();
    assert_eq!(media.bytes.len(), bytes.len());
}

#[tokio::test]
async fn a_sha256_mismatch_is_transient() {
    let stand_in = GraphStandIn::start().await;
    stand_in.add_media("m1", b"the real bytes".to_vec(), "audio/ogg");
    let wrong = sha256_base64(b"other bytes");
    let e = client()
        .download_media(&stand_in.target(), "m1", Some(&wrong), LIMIT)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient);
    assert_eq!(e.title, "sha256 mismatch");

    // The lookup claiming another digest fails the same way.
    stand_in.set_media_sha256("m1", &wrong);
    let e = client()
        .download_media(&stand_in.target(), "m1", None, LIMIT)
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.title.as_str()),
        (ErrorKind::Transient, "sha256 mismatch")
    );
}

#[tokio::test]
async fn media_over_the_limit_is_permanent() {
    let stand_in = GraphStandIn::start().await;
    stand_in.add_media("big", vec![7u8; 10_000], "video/mp4");
    let over = |e: GraphError| {
        assert_eq!(e.kind, ErrorKind::Permanent, "{e:?}");
        assert_eq!(e.title, "media larger than 4096 bytes");
    };

    // The lookup's file_size already tells: the bytes are never fetched.
    over(
        client()
            .download_media(&stand_in.target(), "big", None, 4096)
            .await
            .unwrap_err(),
    );
    assert_eq!(stand_in.requests().len(), 1);

    // Without file_size, the Content-Length tells.
    stand_in.set_media_file_size("big", None);
    over(
        client()
            .download_media(&stand_in.target(), "big", None, 4096)
            .await
            .unwrap_err(),
    );

    // Chunked, without any announced size, the count of streamed bytes tells.
    stand_in.set_media_chunked("big", true);
    let raw = reqwest::Client::new()
        .get(format!("{}/media-download/big", stand_in.base_url()))
        .bearer_auth(GRAPH_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        raw.content_length(),
        None,
        "the stand-in should answer chunked"
    );
    assert!(raw.headers().get("content-length").is_none());
    over(
        client()
            .download_media(&stand_in.target(), "big", None, 4096)
            .await
            .unwrap_err(),
    );

    // Exactly at the limit is fine.
    let media = client()
        .download_media(&stand_in.target(), "big", None, 10_000)
        .await
        .unwrap();
    assert_eq!(media.bytes.len(), 10_000);
}

#[tokio::test]
async fn unknown_media_and_failed_downloads_are_sorted() {
    let stand_in = GraphStandIn::start().await;
    let e = client()
        .download_media(&stand_in.target(), "nope", None, LIMIT)
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.code, e.http_status),
        (ErrorKind::Permanent, Some(100), Some(400))
    );

    stand_in.add_media("m1", b"bytes".to_vec(), "image/png");
    stand_in.fail_next_downloads(1, 500);
    let e = client()
        .download_media(&stand_in.target(), "m1", None, LIMIT)
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.http_status), (ErrorKind::Transient, Some(500)));

    stand_in.fail_next_downloads(1, 404);
    let e = client()
        .download_media(&stand_in.target(), "m1", None, LIMIT)
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.http_status), (ErrorKind::Permanent, Some(404)));

    stand_in.fail_next_lookups(&[(400, meta_error(130429, "Rate limit hit", None))]);
    let e = client()
        .download_media(&stand_in.target(), "m1", None, LIMIT)
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.code), (ErrorKind::Transient, Some(130429)));

    let target = GraphTarget {
        access_token: "revoked".into(),
        ..stand_in.target()
    };
    let e = client()
        .download_media(&target, "m1", None, LIMIT)
        .await
        .unwrap_err();
    assert!(e.token_refused);

    // And then it works.
    let media = client()
        .download_media(&stand_in.target(), "m1", None, LIMIT)
        .await
        .unwrap();
    assert_eq!(media.bytes, b"bytes");
}

#[tokio::test]
async fn a_strict_policy_refuses_loopback_before_any_request() {
    let stand_in = GraphStandIn::start().await;
    stand_in.add_media("m1", b"bytes".to_vec(), "image/png");
    let strict = GraphClient::new(&TargetPolicy::default(), Duration::from_secs(5)).unwrap();
    let e = strict
        .send(&stand_in.target(), &text("hi"))
        .await
        .unwrap_err();
    assert!(e.title.contains("refused"), "{}", e.title);
    assert_eq!(e.kind, ErrorKind::Permanent);
    let e = strict
        .download_media(&stand_in.target(), "m1", None, LIMIT)
        .await
        .unwrap_err();
    assert!(e.title.contains("refused"), "{}", e.title);

    // A name that resolves to loopback is refused by the resolver, too.
    let by_name = GraphTarget {
        base_url: format!("http://localhost:{}", stand_in.addr().port()),
        ..stand_in.target()
    };
    let e = strict.send(&by_name, &text("hi")).await.unwrap_err();
    assert!(e.title.contains("refused"), "{}", e.title);
    assert_eq!(e.kind, ErrorKind::Permanent);

    assert!(stand_in.requests().is_empty(), "{:?}", stand_in.requests());
}
