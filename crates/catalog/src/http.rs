//! The catalog HTTP API: public reads, admin writes.

use axum::extract::{OriginalUri, State};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode, header};
use oxcart_platform::auth::Admin;
use oxcart_platform::http::page::{self, Linked, Page, decode_cursor};
use oxcart_platform::http::{Json, Path, Query, etag};
use oxcart_platform::money::currency_schema;
use oxcart_platform::tax::DEFAULT_CLASS;
use oxcart_platform::{ApiError, FieldError, ProblemKind, Validator};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::{self, Changes, NewProduct, Product};
use crate::store::After;
use crate::{Catalog, Error};

pub const TAG: &str = "catalog";

pub fn router(catalog: Catalog) -> OpenApiRouter {
    routes().with_state(catalog)
}

/// The routes with their OpenAPI description, before the service is attached.
pub fn routes() -> OpenApiRouter<Catalog> {
    OpenApiRouter::new()
        .routes(routes!(create_product, list_products))
        .routes(routes!(get_product, update_product))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProductRequest {
    /// Stock-keeping unit; stored upper-cased, unique.
    #[schema(example = "MUG-01", max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub sku: String,
    #[schema(
        example = "Enamel mug",
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    #[serde(default)]
    #[schema(example = "Holds 350 ml.", max_length = 5000)]
    pub description: String,
    /// Price in the currency's minor unit (cents for EUR).
    #[schema(example = 1450, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub price: i64,
    #[schema(schema_with = currency_schema)]
    pub currency: String,
    /// Its tax class, one of `[tax] rates` in configuration (default `standard`): the
    /// rate its invoices show. Prices include tax.
    #[serde(default)]
    #[schema(example = "standard", max_length = 32)]
    pub tax_class: Option<String>,
    /// Units on hand.
    #[serde(default)]
    #[schema(example = 25, minimum = 0, maximum = 1_000_000_000)]
    pub stock: i64,
}

/// Fields to change; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProductRequest {
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: Option<String>,
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub price: Option<i64>,
    #[schema(schema_with = currency_schema)]
    pub currency: Option<String>,
    #[schema(example = "reduced", max_length = 32)]
    pub tax_class: Option<String>,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    /// Price in the currency's minor unit.
    pub price: i64,
    pub currency: String,
    /// Its tax class; prices include the class's tax.
    pub tax_class: String,
    pub stock: i64,
    /// Increases with every change; also the `ETag`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Product> for ProductView {
    fn from(p: Product) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            price: p.price,
            currency: p.currency.code().to_owned(),
            tax_class: p.tax_class,
            stock: p.stock,
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Case-insensitive text the name must contain.
    #[param(max_length = 100)]
    pub q: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// The version an `If-Match` header asks for; `*` or no header asks for none.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| {
            ApiError::field(
                ProblemKind::MalformedRequest,
                FieldError::header("if-match", "must be an ETag of this product"),
            )
        })
}

fn respond(status: StatusCode, product: Product) -> impl IntoResponse {
    let tag = etag(product.version);
    (
        status,
        [(header::ETAG, tag)],
        Json(ProductView::from(product)),
    )
}

/// Add a product (admin).
#[utoipa::path(
    post,
    path = "/api/products",
    tag = TAG,
    security(("bearer" = [])),
    request_body = CreateProductRequest,
    responses(
        (status = 201, description = "Created", body = ProductView,
            headers(("location" = String), ("etag" = String))),
        (status = 403, description = "The caller is not an admin"),
        (status = 409, description = "The SKU is taken"),
    )
)]
async fn create_product(
    State(catalog): State<Catalog>,
    _admin: Admin,
    Json(request): Json<CreateProductRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let mut v = Validator::default();
    let sku = v.check(&["sku"], domain::parse_sku(&request.sku));
    let name = v.check(&["name"], domain::parse_name(&request.name));
    let description = v.check(
        &["description"],
        domain::parse_description(&request.description),
    );
    let price = v.check(&["price"], domain::parse_price(request.price));
    let currency = v.check(&["currency"], domain::parse_currency(&request.currency));
    let stock = v.check(&["stock"], domain::parse_stock(request.stock));
    let tax_class = v.check(
        &["taxClass"],
        catalog
            .tax()
            .check_class(request.tax_class.as_deref().unwrap_or(DEFAULT_CLASS)),
    );
    let new = v
        .finish(|| {
            Some(NewProduct {
                sku: sku?,
                name: name?,
                description: description?,
                price: price?,
                currency: currency?,
                tax_class: tax_class?,
                stock: stock?,
            })
        })
        .map_err(Error::Invalid)?;
    let product = catalog.create(new).await?;
    let location = format!("/api/products/{}", product.id);
    Ok((
        [(header::LOCATION, location)],
        respond(StatusCode::CREATED, product),
    ))
}

/// List products by name, optionally filtered.
#[utoipa::path(
    get,
    path = "/api/products",
    tag = TAG,
    params(ListQuery),
    responses((status = 200, description = "A page of products", body = Page<ProductView>,
        headers(("Link" = String, description = "`<…&cursor=…>; rel=\"next\"` when another page follows (RFC 8288)"))))
)]
async fn list_products(
    State(catalog): State<Catalog>,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<ListQuery>,
) -> Result<Linked<ProductView>, ApiError> {
    let limit = page::limit(query.limit)?;
    let after: Option<After> = decode_cursor(query.cursor.as_deref())?;
    if query.q.as_ref().is_some_and(|q| q.chars().count() > 100) {
        return Err(ApiError::field(
            ProblemKind::MalformedRequest,
            FieldError::parameter("q", "must be at most 100 characters"),
        ));
    }
    let rows = catalog
        .list(query.q.as_deref(), after.as_ref(), limit + 1)
        .await?;
    let page = Page::from_rows(rows, limit, |(_, after)| after.clone());
    Ok(Linked(page.map(|(product, _)| product.into()), uri))
}

/// A product.
#[utoipa::path(
    get,
    path = "/api/products/{id}",
    tag = TAG,
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product", body = ProductView, headers(("etag" = String))),
        (status = 404, description = "No such product"),
    )
)]
async fn get_product(
    State(catalog): State<Catalog>,
    Path(id): Path<Uuid>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(respond(StatusCode::OK, catalog.get(id).await?))
}
/// Change a product's name, description, price, currency, tax class or stock (admin).
/// Change a product's name, description, price, currency or stock (admin).
///
/// Send the `ETag` from a previous read as `If-Match` to change it only if nobody else
/// has since.
#[utoipa::path(
    patch,
    path = "/api/products/{id}",
    tag = TAG,
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Product id"),
        ("if-match" = Option<String>, Header, description = "ETag the product must still have"),
    ),
    request_body = UpdateProductRequest,
    responses(
        (status = 200, description = "The updated product", body = ProductView, headers(("etag" = String))),
        (status = 403, description = "The caller is not an admin"),
        (status = 404, description = "No such product"),
        (status = 412, description = "The product changed since the `If-Match` ETag"),
    )
)]
async fn update_product(
    State(catalog): State<Catalog>,
    _admin: Admin,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(request): Json<UpdateProductRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let if_version = if_match(&headers)?;
    let mut v = Validator::default();
    let changes = Changes {
        name: request
            .name
            .and_then(|n| v.check(&["name"], domain::parse_name(&n))),
        description: request
            .description
            .and_then(|d| v.check(&["description"], domain::parse_description(&d))),
        price: request
            .price
            .and_then(|p| v.check(&["price"], domain::parse_price(p))),
        currency: request
            .currency
            .and_then(|c| v.check(&["currency"], domain::parse_currency(&c))),
        tax_class: request
            .tax_class
            .and_then(|c| v.check(&["taxClass"], catalog.tax().check_class(&c))),
        stock: request
            .stock
            .and_then(|s| v.check(&["stock"], domain::parse_stock(s))),
    };
    let changes = v.finish(|| Some(changes)).map_err(Error::Invalid)?;
    Ok(respond(
        StatusCode::OK,
        catalog.update(id, if_version, changes).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_strong_weak_and_any() {
        let mut headers = HeaderMap::new();
        assert_eq!(if_match(&headers).unwrap(), None);
        for (value, expected) in [("\"3\"", Some(3)), ("W/\"4\"", Some(4)), ("*", None)] {
            headers.insert(header::IF_MATCH, value.parse().unwrap());
            assert_eq!(if_match(&headers).unwrap(), expected);
        }
        headers.insert(header::IF_MATCH, "\"abc\"".parse().unwrap());
        assert!(if_match(&headers).is_err());
    }
}
