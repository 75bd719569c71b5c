//! Renders an invoice or credit note as an A4 PDF with krilla, in DejaVu Sans, embedded
//! and subset (so any name, Łukasz in Łódź included, prints as written and copies out
//! as text).
//!
//! Layout happens first, as a list of drawing operations per page, measured with the
//! font's own metrics through the shaper krilla itself uses (rustybuzz), so a line is
//! wrapped where it would overflow and never cut. Only then is it drawn, when the number
//! of pages, printed in every page's header, is known. Lines that do not fit flow onto
//! further pages, each with the seller, the document's number and the table's header
//! again; the totals are kept together.
//!
//! There is no clock and no randomness in here: a document renders to the same bytes
//! every time, which is what lets the service store figures and render on demand.

use std::sync::LazyLock;

use krilla::Document as Pdf;
use krilla::geom::{PathBuilder, Point};
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, TextDirection};
use oxcart_platform::money::Currency;

use crate::{Document, Kind};

const WIDTH: f32 = 595.28;
const HEIGHT: f32 = 841.89;
const MARGIN: f32 = 48.0;
const RIGHT: f32 = WIDTH - MARGIN;
/// Where the body must end, leaving the foot of the page clear.
const BOTTOM: f32 = HEIGHT - MARGIN;

const BODY: f32 = 9.0;
const SMALL: f32 = 7.5;
const LEADING: f32 = 1.35;

/// The table's columns: where the description starts and how wide it may be, and the
/// right edges of the figures.
const DESCRIPTION_WIDTH: f32 = 236.0;
const QUANTITY_RIGHT: f32 = 330.0;
const UNIT_RIGHT: f32 = 405.0;
const RATE_RIGHT: f32 = 452.0;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the embedded font cannot be read")]
    Font,
    #[error("the PDF cannot be written: {0}")]
    Pdf(String),
}

/// One font: what krilla embeds, and what measures text.
struct Face {
    pdf: Font,
    shaper: rustybuzz::Face<'static>,
}

impl Face {
    fn load(data: &'static [u8]) -> Option<Self> {
        Some(Self {
            pdf: Font::new(data.into(), 0)?,
            shaper: rustybuzz::Face::from_slice(data, 0)?,
        })
    }

    /// `text`'s advance at `size` points, as shaped (kerning included).
    fn width(&self, text: &str, size: f32) -> f32 {
        let mut buffer = rustybuzz::UnicodeBuffer::new();
        buffer.push_str(text);
        let shaped = rustybuzz::shape(&self.shaper, &[], buffer);
        let units: i64 = shaped
            .glyph_positions()
            .iter()
            .map(|p| i64::from(p.x_advance))
            .sum();
        units as f32 * size / f32::from(self.shaper.units_per_em() as u16)
    }
}

struct Fonts {
    regular: Face,
    bold: Face,
}

/// Parsed once per process: the fonts are 700 KB each, built into the binary.
static FONTS: LazyLock<Option<Fonts>> = LazyLock::new(|| {
    Some(Fonts {
        regular: Face::load(dejavu::sans::regular())?,
        bold: Face::load(dejavu::sans::bold())?,
    })
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weight {
    Regular,
    Bold,
}

/// Where text is anchored: its left edge, or its right edge (figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// What is drawn; `y` is the text's baseline, from the top of the page.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Text {
        x: f32,
        y: f32,
        size: f32,
        weight: Weight,
        align: Align,
        text: String,
    },
    /// "Page i of n", once n is known, right-aligned at `x`.
    PageNumber {
        x: f32,
        y: f32,
    },
    Rule {
        y: f32,
        width: f32,
    },
}

/// `text` broken into lines no wider than `width`: at spaces where it can be, inside a
/// word only when the word alone is wider.
fn wrap(face: &Face, text: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if face.width(&candidate, size) <= width {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        // The word alone: as many characters a line as fit, at least one.
        for c in word.chars() {
            let mut next = line.clone();
            next.push(c);
            if !line.is_empty() && face.width(&next, size) > width {
                lines.push(std::mem::replace(&mut line, c.to_string()));
            } else {
                line = next;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Amounts as `1,234.56`, in the currency's minor unit; the code goes in a heading.
fn amount(currency: &str, minor: i64) -> String {
    Currency::parse(currency).map_or_else(|| minor.to_string(), |c| c.grouped(minor))
}

struct Layout<'a> {
    document: &'a Document,
    fonts: &'a Fonts,
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl<'a> Layout<'a> {
    fn face(&self, weight: Weight) -> &'a Face {
        match weight {
            Weight::Regular => &self.fonts.regular,
            Weight::Bold => &self.fonts.bold,
        }
    }

    fn push(&mut self, op: Op) {
        if let Some(page) = self.pages.last_mut() {
            page.push(op);
        }
    }

    fn text(&mut self, x: f32, y: f32, size: f32, weight: Weight, align: Align, text: &str) {
        self.push(Op::Text {
            x,
            y,
            size,
            weight,
            align,
            text: text.to_owned(),
        });
    }

    /// `text` wrapped to `width` from `x` down from `y`: the baseline after its last line.
    fn paragraph(
        &mut self,
        x: f32,
        mut y: f32,
        width: f32,
        size: f32,
        weight: Weight,
        text: &str,
    ) -> f32 {
        for line in wrap(self.face(weight), text, size, width) {
            self.text(x, y, size, weight, Align::Left, &line);
            y += size * LEADING;
        }
        y
    }

    /// A name (in bold) and the lines under it, each wrapped to `width` from `x` down
    /// from `y`: the baseline after the last.
    fn party(
        &mut self,
        (x, y, width): (f32, f32, f32),
        name: (f32, &str),
        lines: impl IntoIterator<Item = String>,
    ) -> f32 {
        let mut y = self.paragraph(x, y, width, name.0, Weight::Bold, name.1);
        for line in lines {
            y = self.paragraph(x, y, width, BODY, Weight::Regular, &line);
        }
        y
    }

    /// A new page, headed by the seller on the left and the document on the right.
    fn page(&mut self) {
        self.pages.push(Vec::new());
        let document = self.document;
        let seller = &document.seller;
        let half = (RIGHT - MARGIN) / 2.0 - 12.0;
        let lines = seller
            .address
            .iter()
            .cloned()
            .chain(seller.vat_id.iter().map(|id| format!("VAT ID: {id}")))
            .chain(seller.email.iter().cloned());
        let left = self.party((MARGIN, MARGIN + 10.0, half), (11.0, &seller.name), lines);

        let mut right = MARGIN + 12.0;
        let issued = document.issued_at.format("%Y-%m-%d");
        let heading = [
            (16.0, Weight::Bold, document.kind_title().to_owned()),
            (BODY, Weight::Regular, format!("No. {}", document.number)),
            (BODY, Weight::Regular, format!("Issued {issued}")),
        ];
        for (size, weight, text) in heading {
            self.text(RIGHT, right, size, weight, Align::Right, &text);
            right += size * LEADING;
        }
        self.push(Op::PageNumber { x: RIGHT, y: right });
        right += BODY * LEADING;

        self.y = left.max(right) + 4.0;
        self.push(Op::Rule {
            y: self.y,
            width: 0.8,
        });
        self.y += 18.0;
    }

    /// Room for `height` more on this page, or a new one.
    fn room(&mut self, height: f32) -> bool {
        if self.y + height > BOTTOM {
            self.page();
            return false;
        }
        true
    }

    /// The customer on the left; the order, payment and (credit notes) what is credited
    /// and why on the right.
    fn parties(&mut self) {
        let document = self.document;
        let column = (RIGHT - MARGIN) / 2.0 - 12.0;
        let top = self.y;
        self.text(MARGIN, top, SMALL, Weight::Bold, Align::Left, "BILL TO");
        let (name, address) = match document.bill_to.split_first() {
            Some((name, address)) => (name.as_str(), address),
            None => ("", &[][..]),
        };
        let lines = address.iter().cloned().chain(
            document
                .customer_tax_id
                .iter()
                .map(|id| format!("Tax ID: {id}")),
        );
        let left = self.party(
            (MARGIN, top + SMALL * LEADING + 2.0, column),
            (BODY, name),
            lines,
        );

        let x = MARGIN + column + 24.0;
        self.text(x, top, SMALL, Weight::Bold, Align::Left, "DETAILS");
        let mut right = top + SMALL * LEADING + 2.0;
        let mut facts = vec![format!("Order: {}", document.order_id)];
        if let Some(credited) = &document.credits {
            facts.push(format!("Credits invoice: {credited}"));
        }
        if let Some(payment) = &document.payment {
            let date = payment.date.format("%Y-%m-%d");
            facts.push(match document.kind {
                Kind::Invoice => format!(
                    "Payment: {} by {}, {date}",
                    payment.status.to_lowercase(),
                    payment.method.to_lowercase()
                ),
                Kind::CreditNote => format!(
                    "Refund: {} to {}, {date}",
                    payment.status.to_lowercase(),
                    payment.method.to_lowercase()
                ),
            });
            facts.push(format!("Reference: {}", payment.reference));
            facts.push(match document.kind {
                Kind::Invoice => format!("Due: nothing, paid in full on {date}"),
                Kind::CreditNote => format!("Refunded on {date}"),
            });
        }
        if let Some(reason) = &document.reason {
            facts.push(format!("Reason: {reason}"));
        }
        for fact in facts {
            right = self.paragraph(x, right, column, BODY, Weight::Regular, &fact);
        }
        self.y = left.max(right) + 16.0;
    }

    /// Figures right-aligned at each cell's edge, on the baseline `y`.
    fn cells(&mut self, y: f32, size: f32, weight: Weight, cells: &[(f32, &str)]) {
        for (right, text) in cells {
            self.text(*right, y, size, weight, Align::Right, text);
        }
    }

    fn table_header(&mut self) {
        let y = self.y;
        let currency = &self.document.currency;
        self.text(MARGIN, y, SMALL, Weight::Bold, Align::Left, "DESCRIPTION");
        let amount = format!("AMOUNT ({currency})");
        self.cells(
            y,
            SMALL,
            Weight::Bold,
            &[
                (QUANTITY_RIGHT, "QTY"),
                (UNIT_RIGHT, "UNIT PRICE"),
                (RATE_RIGHT, "TAX"),
                (RIGHT, &amount),
            ],
        );
        self.y += 5.0;
        self.push(Op::Rule {
            y: self.y,
            width: 0.5,
        });
        self.y += BODY * LEADING + 2.0;
    }

    fn lines(&mut self) {
        let document = self.document;
        self.table_header();
        for line in &document.lines {
            let description = wrap(
                &self.fonts.regular,
                &line.description,
                BODY,
                DESCRIPTION_WIDTH,
            );
            let sku = (!line.sku.is_empty()).then(|| format!("SKU {}", line.sku));
            let height = description.len() as f32 * BODY * LEADING
                + sku.as_ref().map_or(0.0, |_| SMALL * LEADING)
                + 4.0;
            if !self.room(height) {
                self.table_header();
            }
            let y = self.y;
            let currency = &document.currency;
            self.cells(
                y,
                BODY,
                Weight::Regular,
                &[
                    (QUANTITY_RIGHT, &line.quantity.to_string()),
                    (UNIT_RIGHT, &amount(currency, line.unit_price)),
                    (RATE_RIGHT, &line.tax_rate.to_string()),
                    (RIGHT, &amount(currency, line.line_total)),
                ],
            );
            let mut next = y;
            for text in &description {
                self.text(MARGIN, next, BODY, Weight::Regular, Align::Left, text);
                next += BODY * LEADING;
            }
            if let Some(sku) = &sku {
                self.text(MARGIN, next - 1.0, SMALL, Weight::Regular, Align::Left, sku);
                next += SMALL * LEADING;
            }
            self.y = next + 4.0;
        }
        self.push(Op::Rule {
            y: self.y - BODY * LEADING + 4.0,
            width: 0.5,
        });
        self.y += 8.0;
    }

    /// The tax breakdown and the totals, kept together on one page.
    fn totals(&mut self) {
        let document = self.document;
        let currency = &document.currency;
        let rows = document.taxes.len() as f32 + 6.0;
        self.room(rows * BODY * LEADING + 40.0);
        let (net_right, tax_right, gross_right) = (UNIT_RIGHT, RIGHT - 85.0, RIGHT);
        let label = MARGIN + 150.0;
        let y = self.y;
        self.text(MARGIN, y, SMALL, Weight::Bold, Align::Left, "TAX BREAKDOWN");
        self.text(label, y, SMALL, Weight::Bold, Align::Left, "RATE");
        self.cells(
            y,
            SMALL,
            Weight::Bold,
            &[
                (net_right, "NET"),
                (tax_right, "TAX"),
                (gross_right, "GROSS"),
            ],
        );
        self.y += BODY * LEADING + 2.0;
        for tax in &document.taxes {
            let y = self.y;
            let rate = tax.rate.to_string();
            self.text(label, y, BODY, Weight::Regular, Align::Left, &rate);
            self.cells(
                y,
                BODY,
                Weight::Regular,
                &[
                    (net_right, &amount(currency, tax.net)),
                    (tax_right, &amount(currency, tax.tax)),
                    (gross_right, &amount(currency, tax.gross)),
                ],
            );
            self.y += BODY * LEADING;
        }
        self.y += 10.0;
        let totals = [
            ("Net total", document.net, Weight::Regular),
            ("Tax total", document.tax, Weight::Regular),
            ("Total", document.total, Weight::Bold),
        ];
        for (name, value, weight) in totals {
            let y = self.y;
            let size = if weight == Weight::Bold { 11.0 } else { BODY };
            self.text(label, y, size, weight, Align::Left, name);
            let figure = format!("{} {currency}", amount(currency, value));
            self.cells(y, size, weight, &[(RIGHT, &figure)]);
            self.y += size * LEADING + 2.0;
        }
        self.y += 10.0;
        let note = match document.kind {
            Kind::Invoice => "Prices include tax. Paid in full: nothing is due.",
            Kind::CreditNote => {
                "Prices include tax. The amount has been refunded to the original payment method."
            }
        };
        self.y = self.paragraph(MARGIN, self.y, RIGHT - MARGIN, SMALL, Weight::Regular, note);
    }
}

/// The pages of `document`, laid out.
fn lay_out(document: &Document, fonts: &Fonts) -> Vec<Vec<Op>> {
    let mut layout = Layout {
        document,
        fonts,
        pages: Vec::new(),
        y: 0.0,
    };
    layout.page();
    layout.parties();
    layout.lines();
    layout.totals();
    layout.pages
}

/// `document` as a PDF.
pub fn render(document: &Document) -> Result<Vec<u8>, RenderError> {
    let fonts = FONTS.as_ref().ok_or(RenderError::Font)?;
    let pages = lay_out(document, fonts);
    let count = pages.len();
    let mut pdf = Pdf::new();
    pdf.set_metadata(
        Metadata::new()
            .title(format!("{} {}", document.kind_title(), document.number))
            .creator("oxcart".to_owned())
            .language("en".to_owned()),
    );
    let page_settings = PageSettings::from_wh(WIDTH, HEIGHT)
        .ok_or_else(|| RenderError::Pdf("an A4 page is not a valid size".to_owned()))?;
    for (index, ops) in pages.into_iter().enumerate() {
        let mut page = pdf.start_page_with(page_settings.clone());
        let mut surface = page.surface();
        for op in ops {
            let (x, y, size, weight, align, text) = match op {
                Op::Text {
                    x,
                    y,
                    size,
                    weight,
                    align,
                    text,
                } => (x, y, size, weight, align, text),
                Op::PageNumber { x, y } => (
                    x,
                    y,
                    BODY,
                    Weight::Regular,
                    Align::Right,
                    format!("Page {} of {count}", index + 1),
                ),
                Op::Rule { y, width } => {
                    let mut path = PathBuilder::new();
                    path.move_to(MARGIN, y);
                    path.line_to(RIGHT, y);
                    if let Some(path) = path.finish() {
                        surface.set_fill(None);
                        surface.set_stroke(Some(Stroke {
                            width,
                            ..Stroke::default()
                        }));
                        surface.draw_path(&path);
                        surface.set_stroke(None);
                        surface.set_fill(Some(Fill::default()));
                    }
                    continue;
                }
            };
            let face = match weight {
                Weight::Regular => &fonts.regular,
                Weight::Bold => &fonts.bold,
            };
            let x = match align {
                Align::Left => x,
                Align::Right => x - face.width(&text, size),
            };
            surface.draw_text(
                Point::from_xy(x, y),
                face.pdf.clone(),
                size,
                &text,
                false,
                TextDirection::Auto,
            );
        }
        surface.finish();
        page.finish();
    }
    pdf.finish().map_err(|e| RenderError::Pdf(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fonts() -> &'static Fonts {
        FONTS.as_ref().unwrap()
    }

    #[test]
    fn text_wraps_at_spaces_and_never_loses_a_character() {
        let face = &fonts().regular;
        let text = "A very long product name that cannot possibly fit on one line of the table";
        let lines = wrap(face, text, BODY, 120.0);
        assert!(lines.len() > 2, "{lines:?}");
        assert!(
            lines.iter().all(|l| face.width(l, BODY) <= 120.0),
            "{lines:?}"
        );
        assert_eq!(lines.join(" "), text);
        // A word wider than the column is broken inside, not cut.
        let word = "Donaudampfschifffahrtsgesellschaftskapitänskajüte";
        let lines = wrap(face, word, BODY, 60.0);
        assert!(lines.len() > 1);
        assert_eq!(lines.concat(), word);
    }

    #[test]
    fn widths_are_the_fonts_own() {
        let face = &fonts().regular;
        // In DejaVu Sans an "i" is far narrower than a "W"; a guess per character is not.
        assert!(face.width("WWWW", 10.0) > 2.5 * face.width("iiii", 10.0));
        assert!(fonts().bold.width("Total", 10.0) > face.width("Total", 10.0));
    }

    #[test]
    fn amounts_group_thousands_in_the_currency_unit() {
        assert_eq!(amount("EUR", 123_456_789), "1,234,567.89");
        assert_eq!(amount("EUR", -5), "-0.05");
        assert_eq!(amount("JPY", 1_500), "1,500");
        assert_eq!(amount("KWD", 1_234), "1.234");
    }
}
