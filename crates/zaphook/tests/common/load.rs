//! A steady load of sandbox messages for the tests that break something under it (a full
//! disk, failing fsyncs, a backup): contacts that each write without pause on connection 1,
//! noting what every request was answered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// A message the server acknowledged (202).
#[derive(Debug, Clone)]
pub struct Acked {
    /// zaphook's message id.
    pub id: String,
    pub contact: usize,
    /// Its place among its contact's messages (the body is `c<contact>-<n>`).
    pub n: usize,
}

/// Any other answer.
#[derive(Debug, Clone)]
pub struct Refused {
    pub status: u16,
    pub retry_after: bool,
    pub body: Value,
}

#[derive(Default)]
struct Answers {
    acked: Vec<Acked>,
    refused: Vec<Refused>,
}

pub struct Load {
    answers: Arc<Mutex<Answers>>,
    stop: Arc<AtomicBool>,
    senders: Vec<JoinHandle<()>>,
}

impl Load {
    /// `contacts` writers on `base` (a server with sandbox connection 1), each sending its
    /// messages one after the other, so a contact's acknowledged messages are in order.
    pub fn start(base: &str, token: &str, contacts: usize) -> Load {
        let answers: Arc<Mutex<Answers>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::new();
        let senders = (0..contacts)
            .map(|contact| {
                let url = format!("{base}/api/v1/connections/1/sandbox/inbound");
                let (client, token) = (client.clone(), token.to_string());
                let (answers, stop) = (answers.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let body = json!({"from": format!("5511900{contact:06}"), "body": format!("c{contact}-{n}")});
                        let Ok(resp) = client
                            .post(&url)
                            .bearer_auth(&token)
                            .header("content-type", "application/json")
                            .body(body.to_string())
                            .send()
                            .await
                        else {
                            // The server is gone (killed by the test): the load ends.
                            return;
                        };
                        let status = resp.status().as_u16();
                        let retry_after = resp.headers().contains_key("retry-after");
                        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap_or_default())
                            .unwrap_or(Value::Null);
                        let mut answers = answers.lock().unwrap();
                        match (status, body["id"].as_str()) {
                            (202, Some(id)) => {
                                answers.acked.push(Acked { id: id.to_string(), contact, n });
                                n += 1;
                            }
                            _ => answers.refused.push(Refused { status, retry_after, body }),
                        }
                    }
                })
            })
            .collect();
        Load {
            answers,
            stop,
            senders,
        }
    }

    pub fn acked_count(&self) -> usize {
        self.answers.lock().unwrap().acked.len()
    }

    pub fn refused_count(&self) -> usize {
        self.answers.lock().unwrap().refused.len()
    }

    /// The ids acknowledged so far.
    pub fn acked_ids(&self) -> Vec<String> {
        let answers = self.answers.lock().unwrap();
        answers.acked.iter().map(|a| a.id.clone()).collect()
    }

    /// Waits until `n` messages in all were acknowledged.
    pub async fn until_acked(&self, n: usize) {
        super::eventually(&format!("{n} messages acknowledged"), || async {
            self.acked_count() >= n
        })
        .await;
    }

    /// Stops the writers; answers what was acknowledged and what was not.
    pub async fn stop(self) -> (Vec<Acked>, Vec<Refused>) {
        self.stop.store(true, Ordering::SeqCst);
        for sender in self.senders {
            sender.await.unwrap();
        }
        let answers = std::mem::take(&mut *self.answers.lock().unwrap());
        (answers.acked, answers.refused)
    }
}

/// The ids of messages delivered with a 2xx, in the order they first arrived.
pub fn delivered_ids(got: &[super::Received]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    got.iter()
        .filter(|r| (200..300).contains(&r.status))
        .filter_map(|r| r.json()["id"].as_str().map(str::to_string))
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// Asserts that each contact's acknowledged messages first arrived in the order they were
/// acknowledged.
pub fn assert_in_order(acked: &[Acked], got: &[super::Received]) {
    let place: std::collections::HashMap<&str, (usize, usize)> = acked
        .iter()
        .map(|a| (a.id.as_str(), (a.contact, a.n)))
        .collect();
    let mut last: std::collections::HashMap<usize, usize> = Default::default();
    for id in delivered_ids(got) {
        if let Some((contact, n)) = place.get(id.as_str())
            && let Some(before) = last.insert(*contact, *n)
        {
            assert!(
                before < *n,
                "contact {contact}: message {n} arrived after {before}"
            );
        }
    }
}
