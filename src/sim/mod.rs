//! The embedded AMI simulator: an Asterisk 22 stand-in on tokio. No Python here.
