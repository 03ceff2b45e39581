// Command s3-workload stands for Milvus's storage layer in the test bed's workload Pods: it
// uses the AWS SDK for Go v2's default credential chain (no keys anywhere: on EKS the pod
// identity webhook's AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE lead it to
// AssumeRoleWithWebIdentity), then writes, reads, lists and deletes one object under a prefix.
//
// Usage: s3-workload BUCKET PREFIX
//
// It prints one JSON line: the caller's identity (STS GetCallerIdentity), what it did, and
// the error code of the first refused call, if any. It exits 0 when every call succeeded, 3
// when AWS refused one (the refusal is what a neighbouring ServiceAccount's Pod must see),
// 1 on anything else.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

type report struct {
	Identity  string   `json:"identity,omitempty"`
	Done      []string `json:"done"`
	ErrorCode string   `json:"errorCode,omitempty"`
	Error     string   `json:"error,omitempty"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: s3-workload BUCKET PREFIX")
		os.Exit(2)
	}
	bucket, prefix := os.Args[1], os.Args[2]
	out := report{Done: []string{}}
	err := run(bucket, prefix, &out)
	code := 0
	if err != nil {
		out.Error = err.Error()
		code = 1
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) {
			out.ErrorCode = apiErr.ErrorCode()
			code = 3
		}
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
	os.Exit(code)
}

func run(bucket, prefix string, out *report) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The default chain, exactly as an SDK in a Milvus Pod would load it (environment,
	// web identity token file, ...). AWS_ENDPOINT_URL points it at the emulator.
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	identity, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return err
	}
	out.Identity = aws.ToString(identity.Arn)
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	key := prefix + "/s3-workload-probe"
	body := []byte("written by the test bed's workload Pod")
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)}); err != nil {
		return err
	}
	out.Done = append(out.Done, "PutObject")
	got, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return err
	}
	read, err := io.ReadAll(got.Body)
	_ = got.Body.Close()
	if err != nil {
		return err
	}
	if !bytes.Equal(read, body) {
		return fmt.Errorf("GetObject returned %q, not what was written", read)
	}
	out.Done = append(out.Done, "GetObject")
	listPrefix := prefix + "/"
	listed, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &listPrefix})
	if err != nil {
		return err
	}
	if aws.ToInt32(listed.KeyCount) < 1 {
		return errors.New("ListObjectsV2 did not list the object just written")
	}
	out.Done = append(out.Done, "ListObjectsV2")
	if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key}); err != nil {
		return err
	}
	out.Done = append(out.Done, "DeleteObject")
	return nil
}
