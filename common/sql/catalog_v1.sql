-- Iceberg catalog tables in the JDBC / SQL-catalog layout, so Iceberg's JDBC
-- catalog and PyIceberg's SqlCatalog read them as they are.
-- A namespace is its levels joined by '.'; a view is a row with iceberg_type = 'VIEW'
-- (NULL or 'TABLE' is a table, as in the JDBC catalog's V1 schema).
CREATE TABLE IF NOT EXISTS lake_catalog.iceberg_tables (
    catalog_name text NOT NULL,
    table_namespace text NOT NULL,
    table_name text NOT NULL,
    metadata_location text,
    previous_metadata_location text,
    iceberg_type varchar(5),
    PRIMARY KEY (catalog_name, table_namespace, table_name)
);

-- A namespace exists when it has at least one property; creating one stores
-- the marker property exists = 'true', as the JDBC catalog does.
CREATE TABLE IF NOT EXISTS lake_catalog.iceberg_namespace_properties (
    catalog_name text NOT NULL,
    namespace text NOT NULL,
    property_key text NOT NULL,
    property_value text,
    PRIMARY KEY (catalog_name, namespace, property_key)
);

-- Responses to mutating REST requests that carried an Idempotency-Key, so a
-- retried request gets the original outcome instead of being applied twice.
CREATE TABLE IF NOT EXISTS lake_catalog.rest_idempotency_keys (
    idempotency_key text PRIMARY KEY,
    status_code integer NOT NULL,
    response_body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
