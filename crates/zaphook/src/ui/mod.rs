//! The dashboard at `/ui`, served by `zaphook serve` from the binary: server-rendered pages
//! (templates in `templates/ui/`, compiled in), in English and Portuguese, behind a sign-in
//! with an API token. Nothing is fetched from elsewhere: the stylesheet and the one script
//! (live updates of the pages that show changing state, woken by `/ui/live`) are served here
//! too.

mod charts;
mod conversations;
mod deliveries;
mod edit;
mod endpoints;
mod i18n;
mod live;
mod pages;
mod session;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};

use crate::api::AppState;

pub use session::SESSION_COOKIE;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/connections") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/connections") }))
        .route(
            "/ui/signin",
            get(session::signin_page).post(session::sign_in),
        )
        .route("/ui/signout", post(session::sign_out))
        .route("/ui/lang", get(i18n::switch))
        .route("/ui/connections", get(pages::connections))
        .route("/ui/conversations", get(conversations::list))
        .route("/ui/conversations/{id}", get(conversations::show))
        .route(
            "/ui/endpoints",
            get(endpoints::list).post(endpoints::create),
        )
        .route("/ui/endpoints/{id}", get(endpoints::show))
        .route("/ui/endpoints/{id}/edit", get(edit::show).post(edit::save))
        .route("/ui/endpoints/{id}/{action}", post(endpoints::act))
        // The delivery log, a delivery, and recoveries.
        .route("/ui/deliveries", get(deliveries::log))
        .route("/ui/deliveries/{id}", get(deliveries::delivery))
        .route("/ui/deliveries/{id}/retry", post(deliveries::retry))
        .route("/ui/recoveries", post(deliveries::recover))
        .route("/ui/recoveries/{id}", get(deliveries::recovery))
        .route("/ui/live", get(live::live))
        .route("/ui/static/app.css", get(stylesheet))
        .route("/ui/static/app.js", get(script))
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../templates/ui/app.js"),
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../templates/ui/app.css"),
    )
}
