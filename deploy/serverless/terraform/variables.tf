variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "oxcart"
}

variable "artifacts_dir" {
  description = "Where `cargo lambda build --release --arm64 --output-format zip` left the functions (target/lambda, one directory per function with bootstrap.zip)."
  type        = string
  default     = "../../../target/lambda"
}

variable "catalog_url" {
  description = "Base URL of the catalog service create-order prices orders with (https://…)."
  type        = string
}

variable "catalog_ca_file" {
  description = "Path, inside the function (a layer's /opt/…), of a PEM file of CAs the catalog's certificate is verified against besides the public roots; null when its CA is a public one."
  type        = string
  default     = null
}

variable "jwt_public_key" {
  description = "The `x` of the token issuer's JSON Web Key (GET /.well-known/jwks.json of the users service): the Ed25519 public key the API functions verify tokens with."
  type        = string
}

variable "provisioned_concurrency" {
  description = "Warm instances kept for each API function (0: none, every cold start is paid by a request)."
  type        = number
  default     = 0
}

variable "reserved_concurrency" {
  description = "Most concurrent instances of each API and worker function: a ceiling that protects DynamoDB and the catalog from a burst."
  type        = number
  default     = 50
}

variable "log_retention_days" {
  description = "How long the functions' and the API's logs are kept."
  type        = number
  default     = 365
}

variable "payment_slow_delay_ms" {
  description = "How long the simulated provider takes for tok_slow."
  type        = number
  default     = 3000
}
