//! The legal invoice, read back as its reader would: `pdftotext` (Debian poppler-utils)
//! on the PDF the API serves. The seller and the tax rates come from configuration, the
//! customer from the order, and a long order flows onto further pages.
//!
//! `pdftotext` is not Rust, so these are `#[ignore]`d in a plain `cargo test`;
//! `.ci/run` installs it and runs them with `-- --ignored`.

use oxcart_invoices::Seller;
use oxcart_platform::tax::Rate;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, order_reaches};
use crate::mail::{pdf, pdftotext};

/// A Polish shop: 23 % standard, 8 % reduced.
fn polish_shop(config: &mut oxcart::config::Config) {
    config.invoices.seller = Seller {
        name: "Sklep Przykładowy sp. z o.o.".to_owned(),
        address: vec![
            "ul. Długa 5".to_owned(),
            "00-238 Warszawa".to_owned(),
            "Polska".to_owned(),
        ],
        vat_id: Some("PL5261040828".to_owned()),
        email: Some("faktury@sklep.example".to_owned()),
    };
    config.tax.rates = [("standard", "23"), ("reduced", "8")]
        .into_iter()
        .map(|(class, rate)| (class.to_owned(), Rate::parse_percent(rate).unwrap()))
        .collect();
}

async fn product(app: &TestApp, admin: &str, name: &str, price: i64, class: &str) -> Uuid {
    let body = json!({ "sku": format!("SKU-{}", Uuid::new_v4().simple()), "name": name,
                       "price": price, "currency": "PLN", "stock": 100, "taxClass": class });
    let created = app.api.post("/api/products", Some(admin), &body).await;
    assert_eq!(created.ok(201)["taxClass"], class);
    created.body["id"].as_str().unwrap().parse().unwrap()
}

/// Places and waits for the payment of an order of `items` to Łukasz in Łódź.
async fn order_to_lodz(app: &TestApp, customer: &str, items: &[(Uuid, u32)]) -> String {
    let body = json!({
        "items": items.iter().map(|(id, q)| json!({ "productId": id, "quantity": q })).collect::<Vec<Value>>(),
        "shippingAddress": { "name": "Łukasz Żółć", "line1": "ul. Świętokrzyska 1",
                             "city": "Łódź", "postalCode": "90-001", "country": "pl" },
        "paymentToken": "tok_success",
        "customerTaxId": "pl 7251234567",
    });
    let placed = app.api.post("/api/orders", Some(customer), &body).await;
    let id = placed.ok(201)["id"].as_str().unwrap().to_owned();
    assert!(
        placed.body["items"][0]["taxClass"].is_string(),
        "{}",
        placed.body
    );
    order_reaches(&app.api, customer, &id, "PAID").await;
    id
}

/// The text's lines with their runs of spaces (the layout's columns) as one space.
fn squeezed(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pdftotext (Debian poppler-utils); .ci/run runs it"]
async fn the_invoice_names_seller_and_customer_exactly_and_breaks_down_the_tax() {
    let app = TestApp::spawn_with(polish_shop).await;
    let admin = app.admin().await;
    // A class the configuration does not rate is refused, naming the field.
    let body = json!({ "sku": "LUX-1", "name": "Watch", "price": 100, "currency": "PLN",
                       "taxClass": "luxury" });
    let refused = app.api.post("/api/products", Some(&admin), &body).await;
    let problem = refused.problem(422);
    assert!(problem.to_string().contains("#/taxClass"), "{problem}");

    let lamp = product(&app, &admin, "Lampa biurkowa", 12_300, "standard").await;
    let book = product(&app, &admin, "Książka kucharska", 2_700, "reduced").await;
    let (customer, _) = app.api.customer().await;
    let order = order_to_lodz(&app, &customer, &[(lamp, 1), (book, 2)]).await;

    let text = pdftotext(&pdf(&app, &format!("/api/invoices/{order}"), &customer).await);
    let lines = squeezed(&text);
    let has = |wanted: &str| {
        assert!(
            lines.iter().any(|l| l.contains(wanted)),
            "no {wanted:?} in\n{text}"
        );
    };
    // The customer, exactly as written.
    has("Łukasz Żółć");
    has("ul. Świętokrzyska 1");
    has("90-001 Łódź");
    has("Tax ID: PL 7251234567");
    // The seller, from configuration.
    has("Sklep Przykładowy sp. z o.o.");
    has("ul. Długa 5");
    has("00-238 Warszawa");
    has("VAT ID: PL5261040828");
    // Each line with its rate; then tax per rate on that rate's sum: 123.00 at 23 % holds
    // 23.00, 54.00 at 8 % holds 4.00.
    has("Lampa biurkowa 1 123.00 23% 123.00");
    has("Książka kucharska 2 27.00 8% 54.00");
    has("23% 100.00 23.00 123.00");
    has("8% 50.00 4.00 54.00");
    has("Net total 150.00 PLN");
    has("Tax total 27.00 PLN");
    has("Total 177.00 PLN");
    has("Payment: paid by card");
    has("Due: nothing, paid in full");
    has("Page 1 of 1");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pdftotext (Debian poppler-utils); .ci/run runs it"]
async fn sixty_lines_flow_onto_pages_each_with_the_header_and_the_right_totals() {
    let app = TestApp::spawn_with(polish_shop).await;
    let admin = app.admin().await;
    let mut items = Vec::new();
    let mut total = 0;
    for n in 1..=60_i64 {
        // Every tenth name is far too long for its column: it wraps, whole.
        let name = if n % 10 == 0 {
            format!(
                "Produkt {n} o bardzo długiej nazwie, która nie mieści się w jednej linii tabeli faktury"
            )
        } else {
            format!("Produkt {n}")
        };
        let class = if n % 3 == 0 { "reduced" } else { "standard" };
        let price = 100 * n + 99;
        items.push((product(&app, &admin, &name, price, class).await, 1));
        total += price;
    }
    let (customer, _) = app.api.customer().await;
    let order = order_to_lodz(&app, &customer, &items).await;

    let bytes = pdf(&app, &format!("/api/invoices/{order}"), &customer).await;
    let text = pdftotext(&bytes);
    let pages: Vec<&str> = text
        .split('\u{c}')
        .filter(|p| !p.trim().is_empty())
        .collect();
    assert!(pages.len() > 1, "one page for 60 lines:\n{text}");
    for (n, page) in pages.iter().enumerate() {
        let page = squeezed(page).join("\n");
        assert!(
            page.contains(&format!("Page {} of {}", n + 1, pages.len())),
            "page {} has no page number:\n{page}",
            n + 1
        );
        assert!(page.contains("Sklep Przykładowy sp. z o.o."), "{page}");
        assert!(page.contains("Invoice"), "{page}");
        if page.contains("Produkt ") {
            assert!(
                page.contains("DESCRIPTION"),
                "the table's header on every page: {page}"
            );
        }
    }
    let lines = squeezed(&text);
    let all = lines.join("\n");
    for n in 1..=60 {
        let amount = format!("{n}.99");
        let rate = if n % 3 == 0 { "8%" } else { "23%" };
        let figures = format!("1 {amount} {rate} {amount}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("Produkt {n} ")) && l.ends_with(&figures)),
            "no line {n} ending {figures:?}:\n{all}"
        );
    }
    // The long names are all there, wrapped at spaces rather than cut.
    for word in ["nazwie,", "mieści", "tabeli"] {
        assert_eq!(
            all.split_whitespace().filter(|w| *w == word).count(),
            6,
            "{word}: {all}"
        );
    }
    assert!(!all.contains('…'));
    // 60 × 0.99 + (1 + … + 60) × 1.00.
    assert_eq!(total, 188_940);
    let gross = "Total 1,889.40 PLN";
    assert!(all.contains(gross), "{gross} not in\n{all}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs pdftotext (Debian poppler-utils); .ci/run runs it"]
async fn every_refund_gets_a_credit_note_in_the_invoices_layout() {
    let app = TestApp::spawn_with(polish_shop).await;
    let admin = app.admin().await;
    let lamp = product(&app, &admin, "Lampa biurkowa", 12_300, "standard").await;
    let book = product(&app, &admin, "Książka kucharska", 5_400, "reduced").await;
    let (customer, _) = app.api.customer().await;
    let order = order_to_lodz(&app, &customer, &[(lamp, 1), (book, 1)]).await;

    // Two partial refunds: 35.40 (a fifth of 177.00), then 10.00.
    let mut refunds = Vec::new();
    for (amount, reason) in [(3_540, "uszkodzona"), (1_000, "opóźniona dostawa")] {
        let refund = app
            .api
            .post(
                &format!("/api/orders/{order}/refunds"),
                Some(&admin),
                &json!({ "amount": amount, "reason": reason }),
            )
            .await;
        refunds.push(refund.ok(202)["id"].as_str().unwrap().to_owned());
    }
    let note = |refund: &str| format!("/api/invoices/{order}/credit-notes/{refund}");
    let first = squeezed(&pdftotext(&pdf(&app, &note(&refunds[0]), &customer).await)).join("\n");
    let second = squeezed(&pdftotext(&pdf(&app, &note(&refunds[1]), &customer).await)).join("\n");
    let year = chrono::Utc::now().format("%Y");
    for page in [&first, &second] {
        assert!(page.contains("Credit note"), "{page}");
        assert!(
            page.contains(&format!("Credits invoice: INV-{year}-")),
            "{page}"
        );
        assert!(page.contains("Łukasz Żółć"), "{page}");
        assert!(page.contains("VAT ID: PL5261040828"), "{page}");
    }
    // A fifth of each rate's gross comes back, with a fifth of its tax.
    assert!(first.contains("Reason: uszkodzona"), "{first}");
    assert!(first.contains("23% -20.00 -4.60 -24.60"), "{first}");
    assert!(first.contains("8% -10.00 -0.80 -10.80"), "{first}");
    assert!(first.contains("Total -35.40 PLN"), "{first}");
    assert!(second.contains("Total -10.00 PLN"), "{second}");
    assert!(second.contains("Reason: opóźniona dostawa"), "{second}");
    // Numbered apart, and the latest is the one `/credit-note` serves.
    let number = |page: &str| {
        page.split_whitespace()
            .find(|w| w.starts_with("CN-"))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no number in {page}"))
    };
    assert_ne!(number(&first), number(&second));
    let latest = squeezed(&pdftotext(
        &pdf(
            &app,
            &format!("/api/invoices/{order}/credit-note"),
            &customer,
        )
        .await,
    ))
    .join("\n");
    assert_eq!(number(&latest), number(&second));
    // Another customer reads neither.
    let (stranger, _) = app.api.customer().await;
    app.api
        .get(&note(&refunds[0]), Some(&stranger))
        .await
        .problem(404);
    app.stop().await;
}
