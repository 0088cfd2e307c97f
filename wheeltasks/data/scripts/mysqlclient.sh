# mysqlclient links the MariaDB connector, found with pkg-config.
mod_apk="mariadb-connector-c-dev pkgconf"
