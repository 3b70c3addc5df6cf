terraform {
  required_version = ">= 1.9"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
    # Firebase project and web app resources are beta-only.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 7.0"
    }
  }

  # Keep state in a bucket, not on a laptop (docs/deploy.md step 1):
  #   terraform init -backend-config="bucket=YOUR_STATE_BUCKET" -backend-config="prefix=firesfu"
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
