//! Renders an invoice or credit note as a one-page A4 PDF, in the standard Helvetica
//! fonts (every PDF reader has them, so nothing is embedded).

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};

use crate::Document;

const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;

/// Text in the fonts' WinAnsi encoding; what it cannot show becomes `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            c if (c as u32) < 0x80 || (0xA0..=0xFF).contains(&(c as u32)) => c as u32 as u8,
            '€' => 0x80,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            _ => b'?',
        })
        .collect()
}

/// Helvetica's average glyph width, for right-aligning amounts well enough.
fn width(text: &str, size: f32) -> f32 {
    text.chars().count() as f32 * size * 0.53
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(max.saturating_sub(3)).collect();
    clipped.push_str("...");
    clipped
}

struct Page {
    content: Content,
    y: f32,
}

impl Page {
    fn text(&mut self, font: &[u8], size: f32, x: f32, text: &str) {
        self.content
            .begin_text()
            .set_font(Name(font), size)
            .next_line(x, self.y)
            .show(Str(&win_ansi(text)))
            .end_text();
    }

    fn right(&mut self, font: &[u8], size: f32, right: f32, text: &str) {
        self.text(font, size, right - width(text, size), text);
    }

    fn rule(&mut self) {
        self.content
            .move_to(MARGIN, self.y)
            .line_to(WIDTH - MARGIN, self.y)
            .stroke();
    }

    fn down(&mut self, by: f32) {
        self.y -= by;
    }
}

pub fn render(document: &Document) -> Vec<u8> {
    let (catalog, tree, page_id, regular, bold, contents, info) = (
        Ref::new(1),
        Ref::new(2),
        Ref::new(3),
        Ref::new(4),
        Ref::new(5),
        Ref::new(6),
        Ref::new(7),
    );
    let title = format!("{} {}", document.kind_title(), document.number);
    let mut page = Page {
        content: Content::new(),
        y: HEIGHT - MARGIN,
    };
    page.text(b"F2", 20.0, MARGIN, &title);
    page.right(b"F2", 14.0, WIDTH - MARGIN, "oxcart");
    page.down(28.0);
    page.text(
        b"F1",
        10.0,
        MARGIN,
        &format!("Issued {}", document.issued_at.format("%Y-%m-%d")),
    );
    page.down(14.0);
    page.text(b"F1", 10.0, MARGIN, &format!("Order {}", document.order_id));
    if let Some(credits) = &document.credits {
        page.down(14.0);
        page.text(b"F1", 10.0, MARGIN, &format!("Credits invoice {credits}"));
    }
    page.down(28.0);
    page.text(b"F2", 10.0, MARGIN, "Bill to");
    for line in &document.bill_to {
        page.down(14.0);
        page.text(b"F1", 10.0, MARGIN, line);
    }
    page.down(32.0);
    let (qty, unit, total) = (
        WIDTH - MARGIN - 200.0,
        WIDTH - MARGIN - 90.0,
        WIDTH - MARGIN,
    );
    page.text(b"F2", 10.0, MARGIN, "Description");
    page.right(b"F2", 10.0, qty, "Qty");
    page.right(b"F2", 10.0, unit, "Unit price");
    page.right(b"F2", 10.0, total, "Amount");
    page.down(6.0);
    page.rule();
    for line in &document.lines {
        page.down(16.0);
        if page.y < MARGIN + 60.0 {
            page.text(b"F1", 10.0, MARGIN, "(further lines omitted)");
            break;
        }
        // The description must stop short of the quantity column.
        let room = ((qty - 40.0 - MARGIN) / (10.0 * 0.53)) as usize;
        page.text(b"F1", 10.0, MARGIN, &clip(&line.description, room));
        page.right(b"F1", 10.0, qty, &line.quantity.to_string());
        page.right(b"F1", 10.0, unit, &document.money(line.unit_price));
        page.right(b"F1", 10.0, total, &document.money(line.line_total));
        page.down(11.0);
        let sku = format!("SKU {}", line.sku);
        page.text(b"F1", 8.0, MARGIN, &clip(&sku, room * 5 / 4));
    }
    page.down(10.0);
    page.rule();
    page.down(18.0);
    page.text(b"F2", 12.0, unit - 60.0, "Total");
    page.right(b"F2", 12.0, total, &document.money(document.total));

    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids([page_id]).count(1);
    let mut p = pdf.page(page_id);
    p.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT))
        .parent(tree)
        .contents(contents);
    p.resources()
        .fonts()
        .pair(Name(b"F1"), regular)
        .pair(Name(b"F2"), bold);
    p.finish();
    for (id, name) in [
        (regular, b"Helvetica".as_slice()),
        (bold, b"Helvetica-Bold"),
    ] {
        pdf.type1_font(id)
            .base_font(Name(name))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    pdf.stream(contents, &page.content.finish());
    pdf.document_info(info)
        .title(pdf_writer::TextStr(&title))
        .producer(pdf_writer::TextStr("oxcart"));
    pdf.finish()
}
