//! The JSON API (placeholder until the routes land).
