# psycopg2 links libpq and asks pg_config where it is.
mod_apk="postgresql-dev"
