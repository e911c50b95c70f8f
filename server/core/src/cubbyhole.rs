//! `cubbyhole/`: a private key/value space per token. The storage view is scoped to
//! the caller's token hash by the core, so no token can see another's cubbyhole; the
//! space is deleted with the token.

use coffer_sdk::{Operation, Request, Response, SdkError};
use serde_json::{Map, Value};

/// Serve one cubbyhole request against the caller-scoped storage in `req.storage`.
pub async fn handle(req: &mut Request) -> Result<Response, SdkError> {
    let path = req.path.trim_start_matches('/').to_string();
    match req.operation {
        Operation::List => {
            let prefix = if path.is_empty() || path.ends_with('/') {
                path
            } else {
                format!("{path}/")
            };
            Response::list(req.storage.list(&prefix).await?)
        }
        _ if path.is_empty() || path.ends_with('/') => Err(SdkError::bad("missing secret path")),
        Operation::Read => match req.storage.get(&path).await? {
            Some(bytes) => {
                let map: Map<String, Value> = serde_json::from_slice(&bytes)?;
                Ok(Response::data(map))
            }
            None => Err(SdkError::NotFound),
        },
        Operation::Create | Operation::Update => {
            if req.data.is_empty() {
                return Err(SdkError::bad("missing data fields"));
            }
            req.storage
                .put(&path, serde_json::to_vec(&req.data)?)
                .await?;
            Ok(Response::empty())
        }
        Operation::Delete => {
            req.storage.delete(&path).await?;
            Ok(Response::empty())
        }
        Operation::Patch => Err(SdkError::UnsupportedOperation),
    }
}
