//! `create-order`: `POST /api/orders` behind API Gateway (HTTP API, payload v2).

use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    oxcart_lambda::init_logging();
    let functions = oxcart_lambda::functions::Functions::from_env().await?;
    lambda_http::run(functions.create_order().await?).await
}
