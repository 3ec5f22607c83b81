//! The stdio transport: one JSON-RPC message per line. Requests run concurrently, so a
//! waiting call does not hold up the others; `notifications/cancelled` drops the call it
//! names. Only protocol messages are written to the output; logs go to stderr.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::inflight::InFlight;
use crate::jsonrpc::{self, Incoming, PARSE_ERROR, RpcError};
use crate::session::{Progress, Session};

/// Serves `session` on the process's stdin and stdout until stdin ends.
pub async fn serve_std(session: Session) -> std::io::Result<()> {
    let input = tokio::io::BufReader::new(tokio::io::stdin());
    serve(session, input, tokio::io::stdout()).await
}

/// Serves `session` on `input`/`output` until the input ends.
pub async fn serve<R, W>(session: Session, input: R, mut output: W) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let mut line = serde_json::to_vec(&msg).unwrap_or_default();
            line.push(b'\n');
            output.write_all(&line).await?;
            output.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    });
    let in_flight = Arc::new(InFlight::default());
    let mut lines = input.lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let msg = match serde_json::from_str::<Value>(&line) {
            Ok(v) => jsonrpc::classify(v),
            Err(e) => Incoming::Invalid {
                id: Value::Null,
                error: RpcError::new(PARSE_ERROR, format!("not JSON: {e}")),
            },
        };
        dispatch(&session, msg, &tx, &in_flight);
    }
    // The client closed its end: calls still running finish and answer (each holds a sender,
    // so the writer ends after the last one); a client that does not wait kills the process.
    drop(tx);
    writer
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

fn dispatch(
    session: &Session,
    msg: Incoming,
    tx: &mpsc::UnboundedSender<Value>,
    in_flight: &Arc<InFlight>,
) {
    match msg {
        Incoming::Request { id, method, params } => {
            let progress = Progress::new(&params, tx.clone());
            let (session, tx) = (session.clone(), tx.clone());
            in_flight.spawn(id.to_string(), async move {
                let response = session.respond(id, &method, params, progress).await;
                let _ = tx.send(response);
            });
        }
        Incoming::Notification { method, params } => {
            if method == "notifications/cancelled"
                && let Some(id) = params.get("requestId")
                && in_flight.cancel(&id.to_string())
            {
                tracing::debug!(request = %id, "call cancelled by the client");
            }
        }
        Incoming::Response => {}
        Incoming::Invalid { id, error } => {
            let _ = tx.send(jsonrpc::error(id, &error));
        }
    }
}
