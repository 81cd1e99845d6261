-- The branch office's CRM, as the MariaDB container creates it on its first
-- start (docker-entrypoint-initdb.d, in the database MARIADB_DATABASE). The
-- same clients as the head office's customers, under other names.
-- tablesync adds its own tablesync_* tables and tsync_* triggers when it starts.
CREATE TABLE clients (
  id            INT AUTO_INCREMENT PRIMARY KEY,
  name          VARCHAR(120) NOT NULL,
  email         VARCHAR(160),
  phone         VARCHAR(40),
  record_status TINYINT NOT NULL DEFAULT 1,
  created_at    TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

INSERT INTO clients (name, email, phone) VALUES
  ('Turing Machines', 'alan@turing.example', '+44 161 496 0202');
