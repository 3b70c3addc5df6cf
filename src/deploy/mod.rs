//! How firesfu runs where it is deployed: on Kubernetes (GKE Autopilot), each broadcast pod's
//! own LoadBalancer Service ([`service`], pure) and the API calls that make it ([`k8s`]).

pub mod k8s;
pub mod service;
