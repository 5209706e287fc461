//! Hello, world as a Lambda function: what any `lambda_runtime` binary costs to start. The
//! benchmark's cold-start section compares Mailroom's functions with it.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(serde_json::json!({ "hello": event.payload }))
    }))
    .await
}
