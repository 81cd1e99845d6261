-- The head office's CRM, as the MariaDB container creates it on its first
-- start (docker-entrypoint-initdb.d, in the database MARIADB_DATABASE).
-- tablesync adds its own tablesync_* tables and tsync_* triggers when it starts.
CREATE TABLE customers (
  customer_id   INT AUTO_INCREMENT PRIMARY KEY,
  company_name  VARCHAR(120) NOT NULL,
  email_address VARCHAR(160),
  phone_number  VARCHAR(40),
  state         VARCHAR(10) NOT NULL DEFAULT 'active',
  created       TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

INSERT INTO customers (company_name, email_address, phone_number) VALUES
  ('Lovelace Analytical Engines', 'ada@lovelace.example', '+44 20 7946 0101'),
  ('Hopper Compilers', 'grace@hopper.example', NULL);
