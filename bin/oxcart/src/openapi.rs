//! The OpenAPI document of a set of services, from each one's `ABOUT`.

use oxcart_platform::docs;
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::VERSION;
use crate::config::{Service, Services};

/// The OpenAPI document of `services`, complete with what the shared layers add.
pub fn openapi(services: &Services) -> OpenApi {
    let mut api = OpenApiRouter::<()>::new().into_openapi();
    let mut tags = Vec::new();
    for about in services.iter().map(Service::about) {
        api.merge((about.openapi)());
        tags.push(
            TagBuilder::new()
                .name(about.name)
                .description(Some(about.description))
                .build(),
        );
    }
    // Built whole: the router's default `info` carries utoipa-axum's own package metadata.
    api.info = InfoBuilder::new()
        .title("oxcart")
        .version(VERSION)
        .description(Some(
            "An event-driven commerce backend. Errors are RFC 9457 `application/problem+json` \
             documents; amounts are integers in the currency's minor unit. Protected operations \
             take `Authorization: Bearer <token>` from `POST /api/auth/token`.",
        ))
        .license(Some(utoipa::openapi::License::new("Apache-2.0")))
        .build();
    api.tags = Some(tags);
    docs::complete(&mut api);
    api
}
