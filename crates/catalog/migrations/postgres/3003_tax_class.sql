-- A product's tax class (`[tax] rates` in configuration), which sets the rate its
-- invoices show. Every product before tax classes is `standard`.
ALTER TABLE catalog.products ADD COLUMN tax_class TEXT NOT NULL DEFAULT 'standard';
