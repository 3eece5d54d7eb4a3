//! Autoscaling configuration (KEDA triggers, HPA behaviour) and models of KEDA and the HPA.
