# oxcart's serverless mode: the order API (API Gateway HTTP API → create-order, get-order),
# the events table and its stream-triggered relay, the order queue and its worker. See
# README.md beside this file for building the functions and applying.
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      application = "oxcart"
      mode        = "serverless"
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
