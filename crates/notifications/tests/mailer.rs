//! Both mailers pass the mailer contract: `.eml` files, and SMTP to mailpit (STARTTLS,
//! and implicit TLS with a login), each verified against the test CA.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use oxcart_notifications::{FileMailer, SmtpMailer};
use oxcart_platform::tls::TrustedCas;
use oxcart_test_util::mailer::Outbox;
use oxcart_test_util::mailpit::Mailpit;

async fn files() -> (Outbox, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    let outbox = Outbox::files(Arc::new(FileMailer::new(mail.clone())), mail);
    (outbox, dir)
}

async fn smtp(mailpit: Mailpit, secret: Option<String>) -> (Outbox, ()) {
    let cas = TrustedCas::from_optional(Some(&mailpit.ca())).unwrap();
    let mailer = SmtpMailer::new(&mailpit.smtp_url, &cas).unwrap();
    mailer.check().await.unwrap();
    (Outbox::mailpit(Arc::new(mailer), mailpit, secret), ())
}

async fn starttls() -> (Outbox, ()) {
    smtp(Mailpit::starttls(), None).await
}

async fn smtps() -> (Outbox, ()) {
    let password = std::env::var("OXCART_TEST_SMTPS_PASSWORD").unwrap();
    smtp(Mailpit::smtps(), Some(password)).await
}

mod file {
    use super::files;

    oxcart_test_util::mailer_contract!(files());
}

mod smtp_starttls {
    use super::starttls;

    oxcart_test_util::mailer_contract!(starttls(), #[ignore = "needs mailpit (.ci/services)"]);
}

mod smtp_implicit_tls {
    use super::smtps;

    oxcart_test_util::mailer_contract!(smtps(), #[ignore = "needs mailpit (.ci/services)"]);
}
